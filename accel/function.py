"""accel.function: trace a Python function once per signature, then replay it as a plan.

Tracing runs the function eagerly, on the real values of its first call with that signature, while a
per-thread Trace (accel.recorder.state.trace) records every op application, Variable read and assign,
optimizer update, accel.print and random draw, in program order. The backward pass of a GradientTape
inside the function runs through the ops too (tensor mode), so it is recorded like the forward pass.
The recording becomes a Plan: dead code and common subexpressions removed, constants folded, chains
of elementwise ops fused into one generated numba loop each (accel.ops.codegen renders the ops' own
forward functions, traced with accel.ops.symbolic), a mean of sparse softmax cross-entropy rows and its
backward made one loss kernel each (_fuse_xent_mean), and the rest emitted as one straight-line Python
function that calls the ops' forward functions on arrays: no Tensor wrapping, no tape, no dispatch.

Signatures follow TF 2.21 (/work/shared/reference/CAPTURE.md): tensors and NumPy arrays by shape and
dtype, Variables passed as arguments by shape and dtype, Python scalars and other hashable values by
value (1 == 1.0 == True, as TF), other objects by identity, nested structures by structure.
`input_signature` and `reduce_retracing` make dimensions generic (None), and so does
get_concrete_function(TensorSpec([None, ...])). A plan records the shapes it was traced with; a call with
other concrete shapes under a generic signature gets a plan derived from the recorded graph, without running
the Python again (as TF runs it once per generic trace): the recorded nodes run once unfused on the new
arrays, which gives every value's new shape, and the plan is built for them (fusion, memory plan). Attributes
that are an input's shape (a reduction's, a reshape's -1, the tape's unbroadcast targets) are recorded as
such. Where the Python may have seen a size of a generic dimension (Tensor.shape, len(), accel.shape of a
traced tensor; a guard that comes out differently; a constant or random draw of the traced batch shape; an
op whose other int attributes came from its changed inputs' shapes) the call re-records instead (not counted
as a trace; the Python runs again for that shape). _Recording has the rules.

Python control flow on a traced value (`if loss > 0:`, `while n < 3:`, `int(t)`) records a guard: a
call whose guard comes out differently traces that path too and keeps both. Writes the plan made
before a failing guard are rolled back first (a snapshot of the Variables and optimizer state the
plan writes, taken only by plans that have a guard after a write). On a GPU each guard is a
device-to-host sync.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import inspect
import threading
import warnings
import weakref

import numpy as np

from accel import backend, cuda_plan, fused, recorder, settings
from accel.ops import codegen, symbolic
from accel.ops.core import detached
from accel.tape import _plus as _tape_plus  # the backward pass's cotangent sum: fusible like an add
from accel.tensor import Tensor, TensorShape, TensorSpec

__all__ = ["function", "Function", "ConcreteFunction"]

MAX_CACHED = 256  # concrete functions per Function (LRU); TF keeps all of them
MAX_PLANS = 8  # plans per concrete function (guard paths, and concrete shapes of a generic signature); LRU
RETRACE_WARN_AT = 5  # traces among the last RETRACE_WARN_WINDOW calls of one Python function (TF 2.21's numbers)
RETRACE_WARN_WINDOW = 10
RETRACE_WARN_MAX = 2


class _GuardMiss(Exception):
    pass


# --- tracing ----------------------------------------------------------------------------------

class TracedValueTypeError(TypeError):
    """float()/int() where a guard cannot serve, on a traced value (TF raises TypeError)."""


class TracedValueAttributeError(AttributeError):
    """.numpy() on a traced value (TF's symbolic tensors have no numpy attribute)."""


TRACED_VALUE_ERRORS = (TracedValueTypeError, TracedValueAttributeError)


class NotCapturable(Exception):
    """A backward pass met a value the array-level recording cannot hold (a row gradient)."""


class Trace:
    """One tracing run: the nodes recorded in program order, and where each traced tensor lives."""

    NotCapturable = NotCapturable

    def __init__(self, fn_name, first_trace):
        self.fn_name = fn_name
        self.first_trace = first_trace
        self.nodes = []  # ("op", op, refs, attrs, out_slots) | ("assign", var_ref, how, ref) | ...
        self.slot_of = {}  # Tensor._id -> slot
        self.examples = []  # slot -> the array seen while tracing
        self.keep = []  # the traced tensors, alive until the trace ends (ids stay unique)
        self.paused = 0
        self.var_args = {}  # id(Variable passed as an argument) -> its index
        self.variables = {}  # Tensor._id -> Variable read by a recorded op
        self.var_arrays = {}  # id(array) -> the Variable holding it when an op read it
        self.array_slot = {}  # id(array) -> slot (the arrays stay alive in self.keep / self.examples)
        self.guards_after_write = False
        self._wrote = False
        self.created_variables = False
        # for plans derived for new shapes (see _derive): node index -> {attr name | ("arg", i): fn(examples)}
        # giving a shape-valued attribute or argument from the shapes of the slots it came from, and
        # slot -> the dimensions of it the Python read (None: all of them)
        self.sym = {}
        self.shape_reads = {}
        # (gradient array, where its forward input's shape comes from, that shape): a gradient the tape did not
        # sum down to its input's shape (it had it) must keep having it in a derived plan
        self.grad_ties = []

    def new_slot(self, t):
        s = self.new_array_slot(t._data)
        self.slot_of[t._id] = s
        self.keep.append(t)
        return s

    def new_array_slot(self, a):
        s = len(self.examples)
        self.examples.append(a)
        self.array_slot.setdefault(id(a), s)
        return s

    def aref(self, a):
        """How a plan gets array a: a slot, a Variable's current array, or a constant."""
        s = self.array_slot.get(id(a))
        if s is not None:
            return ("slot", s)
        v = self.var_arrays.get(id(a))
        if v is not None and v._data is a:
            i = self.var_args.get(id(v))
            return ("arg_var", i) if i is not None else ("var", v)
        return ("const", a)

    def _arg(self, x):
        if isinstance(x, (np.ndarray, np.generic)) and id(x) in self.array_slot:
            return ("slot", self.array_slot[id(x)])
        if isinstance(x, np.ndarray):
            return self.aref(x)
        if isinstance(x, (tuple, list)) and any(isinstance(e, np.ndarray) for e in x):
            return ("seq", type(x), tuple(self._arg(e) for e in x))
        if x is not None and not isinstance(x, (np.ndarray, tuple, list, int, float, bool, str, np.dtype)) and \
                not hasattr(x, "xp") and not callable(x) and type(x).__module__.startswith("accel"):
            raise NotCapturable("argument of type %s" % type(x).__name__)
        return ("py", x)

    def array_call(self, fn, args, kwargs, result, op=None, in_ids=None, shape_of=None, grad_of=None):
        """One array-level step of a backward pass (a rule, a fused hook, an unbroadcast, a sum). in_ids: the
        ids of the forward op's inputs (a rule's attributes may hold their shapes); shape_of: (i, id) when
        argument i is the shape of the tensor with that id (sum_to_array's target); grad_of: per result,
        (id, shape) of the forward input it is the gradient of (the tape sums it to that shape if they differ)."""
        refs = tuple(self._arg(a) for a in args)  # before the result is registered: a rule may return an input
        fn = getattr(fn, "array_form", fn)  # a rule's half for arrays, where it names one (what ran here)
        sym = self._shape_attrs(op, kwargs, [self._id_source(i) for i in in_ids]) if in_ids is not None else {}
        if shape_of is not None:
            src = self._id_source(shape_of[1])
            if src is not None:
                sym[("arg", shape_of[0])] = functools.partial(_input_shape, src, tuple(args[shape_of[0]]))
        if grad_of is not None:  # which gradients the tape left unsummed: a derived plan must leave the same
            for r, (iid, shape) in zip(result if isinstance(result, (tuple, list)) else (result,), grad_of):
                if r is not None and id(r) not in self.var_arrays:
                    self.grad_ties.append((r, self._id_source(iid), tuple(shape)))
        if isinstance(result, (np.ndarray, np.generic)):  # NumPy's 0-d arithmetic gives scalars
            if id(result) in self.array_slot or id(result) in self.var_arrays:
                return  # the rule handed back one of its inputs
            outs = (self.new_array_slot(result),)
            multi = False
        elif isinstance(result, (tuple, list)) and all(r is None or isinstance(r, np.ndarray) for r in result):
            outs = tuple(None if r is None else (self.array_slot.get(id(r)) if id(r) in self.array_slot
                                                 else self.new_array_slot(r)) for r in result)
            multi = True
        else:
            raise NotCapturable("a %s cotangent" % type(result).__name__)
        self.keep.append((args, result))
        if sym:
            self.sym[len(self.nodes)] = sym
        self.nodes.append(("acall", fn, refs, kwargs or {}, outs, multi, op))

    def _id_source(self, tid):
        """Where the tensor with id tid got its shape: ("slot", s), ("fixed",) for a Variable, else None."""
        s = self.slot_of.get(tid)
        if s is not None:
            return ("slot", s)
        return ("fixed",) if tid in self.variables else None

    def _shape_attrs(self, op, attrs, sources):
        """{attr: fn(examples)} for the attributes of op that hold its inputs' shapes (see _SHAPE_ATTRS),
        each checked against the shape it stands for."""
        spec = _SHAPE_ATTRS.get(op.name) if op is not None and attrs else None
        if not spec:
            return {}
        out = {}
        for k, j in spec.items():
            if k not in attrs:
                continue
            if j == "sizes":  # concat: each input's size along the axis
                if any(src is None for src in sources):
                    continue
                fn = functools.partial(_concat_sizes, tuple(sources), attrs[k], attrs["axis"])
            elif j == "minus":  # reshape: the size the caller left as -1
                if "minus" not in attrs or sources[0] is None:
                    continue
                fn = functools.partial(_reshape_target, sources[0], attrs[k], attrs["minus"])
            elif j < len(sources) and sources[j] is not None:
                fn = functools.partial(_input_shape, sources[j], attrs[k])
            else:
                continue
            try:
                if fn(self.examples) == attrs[k]:
                    out[k] = fn
            except (TypeError, IndexError):
                pass
        return out

    def watch_shape(self, t):
        """How Tensor.shape notes a read of traced tensor t's dimensions (None: t is not traced)."""
        if self.paused:
            return None
        s = self.slot_of.get(t._id)
        if s is None:
            s = self.array_slot.get(id(t._data))
        if s is None:
            return None
        return functools.partial(self._note_shape_read, s)

    def _note_shape_read(self, slot, dims):
        if recorder.state.trace is not self:  # a shape kept and read after the trace
            return
        prev = self.shape_reads.get(slot, ())
        if prev is None:
            return
        self.shape_reads[slot] = None if dims is None else set(prev) | set(dims)

    def ref(self, t):
        """How a plan gets tensor t: ("slot", s), ("var", v) (read at use), ("arg_var", i) or ("const", a)."""
        s = self.slot_of.get(t._id)
        if s is not None:
            return ("slot", s)
        if getattr(t, "_is_variable", False):
            self.variables[t._id] = t
            self.var_arrays[id(t._data)] = t
            i = self.var_args.get(id(t))
            return ("arg_var", i) if i is not None else ("var", t)
        v = self.variables.get(t._id)
        if v is not None:  # a tape's snapshot of a Variable (the backward pass reads the value it saw)
            i = self.var_args.get(id(v))
            return ("arg_var", i) if i is not None else ("var", v)
        return self.aref(t._data)  # a slot's array in a new Tensor (a gradient), or a constant

    def op(self, op, inputs, attrs, out):
        if self.paused:
            return
        refs = tuple(self.ref(t) for t in inputs)
        outs = tuple(self.new_slot(o) for o in out) if op.multi_out else (self.new_slot(out),)
        if attrs and op.name in _SHAPE_ATTRS:
            sources = [r if r[0] == "slot" else ("fixed",) if r[0] in ("var", "arg_var", "const") else None
                       for r in refs]
            sym = self._shape_attrs(op, attrs, sources)
            if sym:
                self.sym[len(self.nodes)] = sym
        self.nodes.append(("op", op, refs, attrs or {}, outs))

    def assign(self, var, how, value):
        if self.paused:
            return
        ref = self.ref(value) if isinstance(value, Tensor) else ("const", np.asarray(value))
        self.nodes.append(("assign", self.ref(var), how, ref))
        self._wrote = True

    def call(self, what, fn, tensors, writes=False):
        """An opaque host step (an optimizer update, accel.print): fn(*arrays) runs again on replay."""
        if self.paused:
            return
        self.nodes.append(("call", what, fn, tuple(self.ref(t) for t in tensors), writes))
        self._wrote = self._wrote or writes

    def host_value(self, make):
        """A value made outside the op layer each call (a random draw): make() runs again on replay."""
        t = make()
        if not self.paused:
            self.nodes.append(("host", make, self.new_slot(t)))
        return t

    def leaving(self, t, what):
        s = self.slot_of.get(t._id)
        if s is None or self.paused:
            return
        if what in ("bool()", "int()", "index", "value"):
            self.nodes.append(("guard", s, what, _py_value(t._data, what)))
            self.guards_after_write = self.guards_after_write or self._wrote
            return
        exc = TracedValueAttributeError if what in ("numpy()", "__array__") else TracedValueTypeError
        raise exc(
            "accel.function %r: %s on a traced tensor would freeze the value of the call that traced it "
            "into every later call. Return the tensor from the function and convert it outside, print it "
            "with accel.print (runs on every call), or keep computing with accel ops." % (self.fn_name, what))

    def variable_created(self):
        self.created_variables = True
        if not self.first_trace and not self.paused:
            raise ValueError("Creating variables on a non-first call to a function decorated with accel.function "
                             "(%s); create them on the first call or outside the function (tf.function has the "
                             "same rule)." % self.fn_name)


def _py_value(a, what):
    if what == "value":
        return _HostValue(backend.to_numpy(a))
    v = np.asarray(a).reshape(())[()]
    return bool(v) if what == "bool()" else int(v)


class _HostValue:
    """A whole array's value as a guard compares it (dtype, shape and elements)."""

    __slots__ = ("a",)

    def __init__(self, a):
        self.a = np.array(a, copy=True)

    def __eq__(self, other):
        o = other.a if isinstance(other, _HostValue) else np.asarray(other)
        return o.dtype == self.a.dtype and o.shape == self.a.shape and bool(np.array_equal(o, self.a))

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def __repr__(self):
        return np.array2string(self.a, threshold=8)


class _Paused:
    """Inside an opaque step (an optimizer update) the ops it runs are not recorded: the step replays whole."""

    def __enter__(self):
        t = recorder.state.trace
        if t is not None:
            t.paused += 1
        self.t = t

    def __exit__(self, *exc):
        if self.t is not None:
            self.t.paused -= 1


def paused():
    return _Paused()


# --- signatures -------------------------------------------------------------------------------

class _Unhashable:
    pass


def _leaf_key(x, generic):
    """TF 2.21's cache key of one argument leaf; `generic` (a TensorShape or None) relaxes its shape."""
    if isinstance(x, (Tensor, np.ndarray, np.generic)):
        a = x._data if isinstance(x, Tensor) else np.asarray(x)
        shape = tuple(a.shape) if generic is None else generic
        kind = "var" if getattr(x, "_is_variable", False) else "tensor"
        return (kind, shape, str(a.dtype))
    if x is None or isinstance(x, (bool, int, float, str, bytes)):
        return ("py", x)  # 1 == 1.0 == True share a key, as in TF
    try:
        hash(x)
    except TypeError:
        raise TypeError("accel.function: could not make a cache key for argument %r of type %s: pass immutable, "
                        "hashable values (tuples, not lists or dicts of non-tensors; TF says the same)"
                        % (x, type(x).__name__)) from None
    return ("obj", _WeakKey(x))


class _WeakKey:
    """Identity of an object argument without keeping it alive (TF keys custom objects by weakref)."""

    __slots__ = ("ref", "h")

    def __init__(self, x):
        try:
            self.ref = weakref.ref(x)
        except TypeError:
            self.ref = lambda x=x: x
        self.h = id(x)

    def __hash__(self):
        return self.h

    def __eq__(self, other):
        return isinstance(other, _WeakKey) and self.ref() is other.ref() and self.ref() is not None


def _flatten(x, path, leaves, sort_keys=True):
    """The structure of x (lists, tuples, dicts; dict keys sorted for a signature, as TF's nest does, or
    in insertion order for a result) with its leaves appended to `leaves` as (path, value)."""
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        parts = []
        for i, v in enumerate(x):
            parts.append(_flatten(v, path + (i,), leaves, sort_keys))
        return (type(x).__name__, tuple(parts))
    if isinstance(x, tuple):  # namedtuple
        return (type(x).__name__, tuple(_flatten(v, path + (f,), leaves, sort_keys) for f, v in zip(x._fields, x)))
    if isinstance(x, dict):
        keys = sorted(x, key=repr) if sort_keys else list(x)
        return ("dict", tuple((k, _flatten(x[k], path + (k,), leaves, sort_keys)) for k in keys))
    leaves.append((path, x))
    return None


_NO_RESULT = ("none", ())  # the structure of a function that returns None


def _pack(structure, it, wrap):
    if structure is _NO_RESULT:
        return None
    if structure is None:
        return wrap(next(it))
    kind, parts = structure
    if kind == "dict":
        return {k: _pack(p, it, wrap) for k, p in parts}
    vals = [_pack(p, it, wrap) for p in parts]
    return vals if kind == "list" else tuple(vals) if kind == "tuple" else vals


# --- the plan ---------------------------------------------------------------------------------

class Plan:
    """A recorded trace made into one Python function over arrays, with fused elementwise kernels."""

    def __init__(self, trace, input_slots, out_refs, out_structure, fuse):
        self.trace_nodes = trace.nodes
        self.out_structure = out_structure
        self.guards = [n for n in trace.nodes if n[0] == "guard"]
        self.snapshot = trace.guards_after_write
        self.shapes = [tuple(a.shape) for a in trace.examples]
        self.dtypes = [a.dtype for a in trace.examples]
        self.input_slots = input_slots
        self._examples = trace.examples
        nodes, alias = _fold_and_cse(trace.nodes, trace.examples)
        out_refs = [alias.get(r[1], r) if r[0] == "slot" else r for r in out_refs]
        nodes, out_refs = _dce(nodes, out_refs)
        self.name = trace.fn_name
        self.xp = next((backend.xp_of(a) for a in trace.examples if backend.is_cupy_array(a)), np)
        self.kernels = []
        if fuse:
            nodes = _fuse_xent_mean(nodes, trace.examples, out_refs, exact=fuse == "exact", xp=self.xp)
            nodes = _fuse(nodes, trace.examples, out_refs, self.kernels, exact=fuse == "exact", xp=self.xp)
        self.nodes = nodes
        self.out_refs = out_refs
        self.writes = _written(nodes)
        arg_arrays = {trace.var_args[id(v)]: v._data for v in trace.variables.values() if id(v) in trace.var_args}
        self.memory = MemoryPlan(nodes, trace.examples, out_refs, arg_arrays)
        self.run, self.source = _emit(nodes, input_slots, out_refs, self.memory, xp=self.xp)
        self.post = None  # turns the plan's outputs into the function's (Python constants, None)
        self.arena = None  # the MemoryPlan's buffers, made on the first replay (see Function._replay)
        self._variants = {}
        self.graphs = None  # {start: (stop, inputs, outputs, cuda_plan.GraphSegment)} once the GPU replays
        self._arena_lock = threading.Lock()

    def variant(self, mode):
        """The plan emitted for `mode` ("arena" or "count"), made on first use."""
        fn = self._variants.get(mode)
        if fn is None:
            graphs = None
            if mode in ("graph", "graph_whole_step"):
                graphs = self.graphs = _graph_segments(self, whole_step=mode == "graph_whole_step")
            fn = self._variants[mode] = _emit(self.nodes, self.input_slots, self.out_refs, self.memory,
                                              "plain" if graphs is not None else mode, xp=self.xp, graphs=graphs)[0]
        return fn

    def execute(self, arrays, arg_vars):
        """One replay: with the arena when this thread gets it (a second thread replaying the same plan at
        the same time allocates instead), counted when this thread profiles."""
        if recorder.hooks.profile is not None:
            outs = self.variant("count")(arrays, arg_vars)
        elif self.xp is not np and cuda_plan.graphs_enabled() and self._arena_lock.acquire(blocking=False):
            try:  # the graphs hold their memory, as the arena does: one thread replays them at a time
                mode = "graph_whole_step" if settings.cuda_graphs_whole_step() else "graph"
                outs = self.variant(mode)(arrays, arg_vars)
            finally:
                self._arena_lock.release()
        elif self.memory.buffers and self._arena_lock.acquire(blocking=False):
            try:
                if self.arena is None:
                    self.arena = self.memory.allocate(self.xp)
                    _arenas.hold(self)
                outs = self.variant("arena")(arrays, arg_vars, self.arena)
            finally:
                self._arena_lock.release()
        else:
            outs = self.run(arrays, arg_vars)
        return outs if self.post is None else self.post(outs)

    def peak_bytes(self):
        """The most bytes of intermediate values alive at once while the plan runs (each value freed after
        its last reader, as the MemoryPlan releases it; inputs, Variables and constants not counted)."""
        live, peak = {}, 0
        for i, n in enumerate(self.nodes):
            for sl in _produced(n):
                live[sl] = int(np.asarray(self._examples[sl]).nbytes)
            peak = max(peak, sum(live.values()))
            for sl in self.memory.release.get(i, ()):
                live.pop(sl, None)
        return peak

    def counts(self):
        ops = sum(1 for n in self.nodes if n[0] == "op")
        return {"ops": ops, "fused_kernels": sum(1 for n in self.nodes if n[0] == "kernel"),
                "rule_calls": sum(1 for n in self.nodes if n[0] == "acall"), "peak_bytes": self.peak_bytes(),
                "recorded_ops": sum(1 for n in self.trace_nodes if n[0] == "op"),
                "guards": len(self.guards), "host_steps": sum(1 for n in self.nodes if n[0] in ("call", "host")),
                "arena_buffers": len(self.memory.buffers), "arena_bytes": self.memory.arena_bytes,
                "stores": sum(len(k.stores) for k in self.kernels)}


def _fold_and_cse(nodes, examples):
    """Constant folding (an op whose inputs are all constants becomes a constant) and common
    subexpression elimination (the same op, attributes and inputs computed twice). Nothing moves
    across a write: a Variable read is done where its op is, so it never merges with another."""
    alias = {}  # slot -> ref it equals
    seen = {}
    out = []
    for n in nodes:
        n = _rename(n, alias)
        if n[0] != "op":
            out.append(n)
            if n[0] in ("assign", "call"):
                seen.clear()
            continue
        _, op, refs, attrs, outs = n
        if op.rules is None and op.name in _IMPURE:
            out.append(n)
            continue
        if all(r[0] == "const" for r in refs) and not op.multi_out:
            alias[outs[0]] = ("const", examples[outs[0]])
            continue
        if any(r[0] in ("var", "arg_var") for r in refs):
            out.append(n)
            continue
        try:
            key = (op.name, tuple(_ref_key(r) for r in refs), _attrs_key(attrs))
        except TypeError:
            out.append(n)
            continue
        prev = seen.get(key)
        if prev is not None:
            for o, p in zip(outs, prev):
                alias[o] = ("slot", p)
            continue
        seen[key] = outs
        out.append(n)
    return out, alias


_IMPURE = {"to_device"}


def _ref_key(r):
    if r[0] == "const":
        a = r[1]
        if a.size > 64:
            return ("constid", id(a))
        return ("const", str(a.dtype), a.shape, a.tobytes())
    return r


def _attrs_key(attrs):
    items = []
    for k in sorted(attrs):
        v = attrs[k]
        if isinstance(v, np.ndarray):
            v = ("arr", v.shape, str(v.dtype), v.tobytes())
        hash(v)
        items.append((k, v))
    return tuple(items)


def _rename(n, alias):
    if not alias:
        return n
    f = lambda r: alias.get(r[1], r) if r[0] == "slot" else r  # noqa: E731
    kind = n[0]
    if kind == "op":
        return (kind, n[1], tuple(f(r) for r in n[2]), n[3], n[4])
    if kind == "assign":
        return (kind, n[1], n[2], f(n[3]))
    if kind == "call":
        return (kind, n[1], n[2], tuple(f(r) for r in n[3]), n[4])
    if kind == "acall":
        return (kind, n[1], _rename_refs(n[2], f), n[3], n[4], n[5], n[6])
    if kind == "guard":
        r = alias.get(n[1])
        if r is not None and r[0] == "slot":
            return (kind, r[1], n[2], n[3])
        if r is not None:
            return ("guard_const", r, n[2], n[3])
    return n


def _rename_refs(refs, f):
    return tuple(("seq", r[1], _rename_refs(r[2], f)) if r[0] == "seq" else f(r) for r in refs)


def _used_slots(n):
    kind = n[0]
    if kind == "op":
        return [r[1] for r in n[2] if r[0] == "slot"]
    if kind == "assign":
        return [n[3][1]] if n[3][0] == "slot" else []
    if kind == "call":
        return [r[1] for r in n[3] if r[0] == "slot"]
    if kind == "guard":
        return [n[1]]
    if kind == "kernel":
        return [r[1] for r in n[1].inputs if r[0] == "slot"]
    if kind == "acall":
        return list(_slots_in(n[2]))
    return []


def _slots_in(refs):
    return (r[1] for r in _flat_refs(refs) if r[0] == "slot")


def _dce(nodes, out_refs):
    """Drops op nodes whose outputs nothing uses (assigns, host calls, guards and draws stay)."""
    live = {r[1] for r in out_refs if r[0] == "slot"}
    keep = []
    for n in reversed(nodes):
        if n[0] == "op" and not any(o in live for o in n[4]) and n[1].name not in _IMPURE:
            continue
        if n[0] == "acall" and not any(o in live for o in n[4] if o is not None):
            continue
        keep.append(n)
        live.update(_used_slots(n))
    keep.reverse()
    return keep, out_refs


def _produced(n):
    kind = n[0]
    if kind == "op":
        return list(n[4])
    if kind == "acall":
        return [o for o in n[4] if o is not None]
    if kind == "kernel":
        return list(n[1].outputs)
    if kind == "host":
        return [n[2]]
    return []


def _written(nodes):
    return [n for n in nodes if n[0] == "assign" or (n[0] == "call" and n[4]) or (n[0] == "kernel" and n[1].stores)]


# --- fusion -----------------------------------------------------------------------------------

_FUSIBLE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_traceable = {}  # (op name, attrs key) -> ("exact" | "inexact" | False, number of scalar operations)


class FusedKernel:
    """Member op nodes in order, run as one generated loop: external inputs, escaping outputs."""

    def __init__(self, shape, dtype):
        self.shape = shape
        self.dtype = dtype
        self.members = []
        self.slots = set()
        self.inputs = []  # refs, in argument order
        self.outputs = []  # slots
        self.stores = []  # (Variable, "assign" | "add" | "sub", slot): the loop writes the Variable in place
        self.fn = None
        self.source = None

    def describe(self):
        steps = [_view(m)[0] for m in self.members] + ["%s %s" % (how, v.name) for v, how, _ in self.stores]
        return "%s %s x%d: %s" % (self.dtype, self.shape, len(self.members), " -> ".join(steps))

    def cuda_source(self):
        """The group as one CUDA template (kernels/common.cuh's ld/st/ACC helpers), the same expression the
        numba loop computes: what the GPU path compiles with NVRTC (checked for sm_75..sm_120 by
        tests/kernels/test_fused_groups_nvrtc.py). Returns (source, kernel name)."""
        names = tuple("a%d" % i for i in range(len(self.inputs)))
        lines, res = codegen._lines(self.roots, codegen._C, codegen._c_const, lambda fn: "m_" + fn, arrays=names)
        name = "fused_" + hashlib.sha1(self.source.encode()).hexdigest()[:12]
        params = []
        for k, dt in enumerate(self.out_dtypes):
            params.append(("bool* o%d" if dt == np.bool_ else "T* o%d") % k)
        for nm, dt in zip(names, self.in_dtypes):
            params.append(("const bool* %s" if dt == np.bool_ else "const T* %s") % nm)
        out = ['#include "common.cuh"', "template <typename T>",
               "__global__ void %s(%s, long long cols, long long n) {" % (name, ", ".join(params)),
               "  typedef ACC(T) A;", "  GRID_STRIDE(i, n) {"]
        for nm, kind, dt in zip(names, self.in_kinds, self.in_dtypes):
            idx = {"same": "i", "scalar": "0", "row": "i % cols"}[kind]
            out.append(("    const bool %s_ = %s[%s];" if dt == np.bool_ else "    const A %s_ = ld(%s, %s);")
                       % (nm, nm, idx))
        out += ["    const %s %s = %s;" % ("bool" if b else "A", t, code) for t, b, code in lines]
        for k, (r, dt) in enumerate(zip(res, self.out_dtypes)):
            out.append(("    o%d[i] = %s;" if dt == np.bool_ else "    st(o%d, i, %s);") % (k, r))
        out += ["  }", "}"]
        return "\n".join(out) + "\n", name

    def run(self, dest, *arrays):
        """Runs the loop over the flattened arrays (inputs made contiguous) into `dest`: one array per
        output (None: allocate one) then the stored Variables' arrays; returns the outputs."""
        xp = backend.xp_of(arrays[0]) if arrays else np
        outs = [xp.empty(self.shape, dt) if d is None else d for d, dt in zip(dest, self.out_dtypes)]
        if xp is np:
            flat = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
            self.fn(*[_flat_view(o) for o in outs], *flat, self.cols)
        else:
            cuda_plan.launch_group(self, [_flat_view(o) for o in outs], arrays)
        return outs[:len(self.outputs)]


def _flat_view(a):
    if not a.flags.c_contiguous:  # a Variable's array made non-contiguous behind the plan's back
        raise RuntimeError("accel.function: a fused kernel's destination is not contiguous")
    return a.reshape(-1)


def _input_kind(shape, ex_shape):
    """How a loop indexes an input of this shape in an output of ex_shape: same, scalar, row (last axis)."""
    if shape == ex_shape:
        return "same"
    if int(np.prod(shape, dtype=np.int64)) == 1:
        return "scalar"
    if len(ex_shape) and len(shape) and shape[-1] == ex_shape[-1] and int(np.prod(shape)) == ex_shape[-1] \
            and len(shape) <= len(ex_shape):
        return "row"
    return None


def _view(n):
    """(label, refs, build, out slot, cache key) of a node fusion may take, else None: an elementwise
    op's forward, an elementwise op's gradient rule (a backward step), or a cotangent sum."""
    if n[0] == "op":
        _, op, refs, attrs, outs = n
        if not op.elementwise or op.multi_out or len(outs) != 1:
            return None
        return (op.name, refs, lambda *a: op.forward(symbolic.NS, *a, **attrs), outs[0], (op.name, attrs))
    if n[0] == "acall" and not n[5]:
        _, fn, refs, kwargs, outs, _multi, op = n
        if fn is _tape_plus:
            return ("add_n", refs, lambda a, b: a + b, outs[0], ("+",))
        if op is None or not op.elementwise or op.rules is None or fn not in op.rules:
            return None
        # rule(F, g, out, *inputs): F is the namespace; an unsaved value is None
        return (op.name + "'", refs[1:], lambda *a: fn(symbolic.NS, *a, **kwargs), outs[0], (fn, kwargs))
    return None


# functions whose NumPy and generated-loop results may differ in the last bits (libm or accel.cpu_math
# against NumPy's SIMD ufuncs); the basic arithmetic, comparisons, selects and sqrt are IEEE-exact in both
_INEXACT = {"exp", "expm1", "log", "log1p", "tanh", "erf", "sin", "cos", "sinh", "cosh"}


def _fusible(n, examples, exact=False):
    v = _view(n)
    if v is None:
        return None
    _, refs, build, out, key = v
    ex = examples[out]
    if ex.dtype not in _FUSIBLE_DTYPES and ex.dtype != np.bool_:
        return None
    shape = tuple(ex.shape)
    if not shape or int(np.prod(shape)) < 1:
        return None
    n_args = 0
    for r in refs:
        if r[0] == "py":
            if r[1] is not None:
                return None
            continue
        n_args += 1
        if r[0] in ("var", "arg_var"):
            a = r[1]._data if r[0] == "var" else None
            if a is None:
                return None
        elif r[0] in ("slot", "const"):
            a = examples[r[1]] if r[0] == "slot" else r[1]
        else:
            return None
        if a.dtype not in _FUSIBLE_DTYPES and a.dtype != np.bool_:
            return None
        if _input_kind(tuple(a.shape), shape) is None:
            return None
    try:
        key = _traceable_key(key)
    except TypeError:
        return None
    ok = _traceable.get(key)
    if ok is None:
        try:
            it = iter(range(n_args))
            args = [None if r[0] == "py" else symbolic.var("a%d" % next(it)) for r in refs]
            e = symbolic.const(build(*args))
            steps = [m for m in symbolic.postorder(e) if m.op not in ("var", "const")]
            ok = ("inexact" if any(m.op in _INEXACT for m in steps) else "exact", len(steps))
        except Exception:
            ok = (False, 0)
        _traceable[key] = ok
    if not ok[0] or (exact and ok[0] == "inexact"):
        return None
    return shape


def _traceable_key(view_key):
    """_traceable's key for a _view's cache key: (op name or rule, hashable attributes)."""
    return view_key[0], _attrs_key(view_key[1]) if len(view_key) > 1 else ()


def _steps(n):
    """How many scalar operations a fusible node's expression has (NumPy runs each as a pass)."""
    return _traceable.get(_traceable_key(_view(n)[4]), (None, 1))[1]


def _float_dtype(n, examples):
    dts = {examples[o].dtype for o in n[4] if o is not None}
    for r in (n[2] if n[0] == "op" else n[2][1:]):
        if r[0] == "slot":
            dts.add(examples[r[1]].dtype)
        elif r[0] == "const":
            dts.add(r[1].dtype)
        elif r[0] == "var":
            dts.add(r[1]._data.dtype)
    dts.discard(np.dtype(np.bool_))
    return dts.pop() if len(dts) == 1 else None


def _fuse(nodes, examples, out_refs, kernels, exact=False, xp=np):
    """Groups elementwise op nodes of one shape and float dtype into FusedKernels (greedy, in program
    order: a group runs where it closes, which is before the first node outside it that reads it)."""
    if not _fusion_ready(xp):
        return nodes
    out = []
    open_groups = {}  # (shape, dtype) -> FusedKernel

    def close(g):
        del open_groups[(g.shape, g.dtype)]
        # one node is worth a kernel when NumPy would make several passes for it (relu's g * (out > 0))
        if len(g.members) + len(g.stores) < 2 and _steps(g.members[0]) < 2:
            out.extend(g.members)
            return
        out.append(("kernel", g))

    for n in nodes:
        g = _store_group(n, open_groups, examples)
        if g is not None:  # the group computing the value writes it into the Variable, as its last step
            g.stores.append((n[1][1], n[2], n[3][1]))
            for other in list(open_groups.values()):
                if other is not g:
                    close(other)
            close(g)
            continue
        shape = _fusible(n, examples, exact) if n[0] in ("op", "acall") else None
        dt = _float_dtype(n, examples) if shape is not None else None
        used = set(_used_slots(n))
        for g in list(open_groups.values()):
            if (shape is None or (g.shape, g.dtype) != (shape, dt)) and used & g.slots:
                close(g)
        if shape is None or dt is None:
            if n[0] in ("assign", "call", "guard", "host"):
                for g in list(open_groups.values()):
                    close(g)
            out.append(n)
            continue
        g = open_groups.get((shape, dt))
        if g is None:
            g = open_groups[(shape, dt)] = FusedKernel(shape, dt)
        g.members.append(n)
        g.slots.add(_view(n)[3])
    for g in list(open_groups.values()):
        close(g)
    # escaping values: read by a node outside the group, or returned
    readers = collections.Counter()
    for n in out:
        if n[0] == "kernel":
            continue
        readers.update(_used_slots(n))
    ret = {r[1] for r in out_refs if r[0] == "slot"}
    kernel_nodes = [n[1] for n in out if n[0] == "kernel"]
    for g in kernel_nodes:
        for other in kernel_nodes:
            if other is not g:
                for m in other.members:
                    readers.update(s for s in _used_slots(m) if s in g.slots)
    for g in kernel_nodes:
        _build_kernel(g, examples, readers, ret, cpu=xp is np)
        kernels.append(g)
    return out


def _fuse_xent_mean(nodes, examples, out_refs, exact=False, xp=np):
    """reduce_mean over the rows of sparse_softmax_cross_entropy_with_logits, rows that nothing else reads,
    becomes one step (nn.sparse_xent_mean: one kernel that also takes the mean) where the cross-entropy
    was; and the backward pair, the mean's rule (g / N broadcast over the rows) feeding the cross-entropy's
    fused hook and read by nothing else, becomes one step (nn.sparse_xent_mean_grad: g / N inside the
    kernel) where the hook was. Each rewrite stands alone (rows also returned: only the backward one).
    On the host both kernels equal eager bitwise (the rows' own expression; np.mean's pairwise order);
    on a GPU the mean's order differs from CuPy's, so there it needs jit_compile=True."""
    if (exact and xp is not np) or not _fusion_ready(xp):
        return nodes
    from accel.ops import nn  # noqa: PLC0415

    xent, mean = nn._sparse_xent, nn.reduce_mean.op
    readers = collections.Counter(r[1] for r in out_refs if r[0] == "slot")
    made_by = {}
    for i, n in enumerate(nodes):
        readers.update(_used_slots(n))
        for sl in _produced(n):
            made_by[sl] = i

    def rows_of(labels_ref, logits_ref):
        """The row count where labels and logits are what the kernels take, else None."""
        lg, lb = (_ref_example(r, examples) for r in (logits_ref, labels_ref))
        if lg is None or lb is None or lg.ndim != 2 or 0 in lg.shape or lg.dtype not in _FUSIBLE_DTYPES \
                or lb.dtype.kind not in "iu" or lb.shape != lg.shape[:1]:
            return None
        return lg.shape[0]

    def producer(ref, kind, fn_or_op):
        """The node making slot ref (read by nothing else) when it is an `kind` node of fn_or_op."""
        if ref[0] != "slot" or readers[ref[1]] != 1 or ref[1] not in made_by:
            return None
        j = made_by[ref[1]]
        n = nodes[j]
        if n[0] != kind or (n[1] if kind == "op" else n[6]) is not fn_or_op:
            return None
        return j

    replace, drop = {}, set()
    for i, n in enumerate(nodes):
        if n[0] == "op" and n[1] is mean and len(n[2]) == 1 and n[3].get("axes") == (0,):
            j = producer(n[2][0], "op", xent)
            if j is not None and len(nodes[j][2]) == 2 and rows_of(*nodes[j][2]):
                replace[j] = ("op", nn.sparse_xent_mean, nodes[j][2], {"keepdims": n[3]["keepdims"]}, n[4])
                drop.add(i)
        elif n[0] == "acall" and n[1] is xent.fused and len(n[2]) == 5 and n[5] and n[4][0] is None:
            # fused(xp, g, out, labels, logits) -> (None, d logits); g made by the mean's rule
            j = producer(n[2][1], "acall", mean)
            if j is None:
                continue
            m = nodes[j]
            rows = rows_of(n[2][3], n[2][4])
            if m[1] is not mean.rules[0] or len(m[2]) != 4 or m[2][0][0] != "py" or m[3].get("axes") != (0,) \
                    or rows is None or tuple(m[3].get("shape", ())) != (rows,) or m[2][1][0] not in ("slot", "const"):
                continue
            replace[i] = ("acall", nn.sparse_xent_mean_grad, (m[2][0], n[2][0], m[2][1], n[2][3], n[2][4]), m[3],
                          n[4], True, nn.sparse_xent_mean)
            drop.add(j)
    if not replace:
        return nodes
    return [replace.get(i, n) for i, n in enumerate(nodes) if i not in drop]


def _ref_example(r, examples):
    """The array a slot or constant ref stood for while tracing (Variables: their current array), else None."""
    if r[0] == "slot":
        return examples[r[1]]
    if r[0] == "const":
        return r[1]
    if r[0] == "var":
        return r[1]._data
    return None


def _store_group(n, open_groups, examples):
    """The open group that can take assign node n as an in-place store into its Variable, else None."""
    if n[0] != "assign" or n[1][0] != "var" or n[3][0] != "slot":
        return None
    v, slot = n[1][1], n[3][1]
    g = next((g for g in open_groups.values() if slot in g.slots), None)
    data = v._data
    if g is None or type(data) is not type(examples[slot]) or not data.flags.c_contiguous \
            or tuple(data.shape) != g.shape or data.dtype != g.dtype or examples[slot].dtype != g.dtype:
        return None
    # the loop reads input element i before it writes element i of the Variable: only an input that is
    # the Variable itself, or shares no memory with it, is safe (not a row or a view of another shape)
    for m in g.members:
        for r in _view(m)[1]:
            if r[0] == "slot" and r[1] not in g.slots and backend.may_share_memory(examples[r[1]], data):
                return None
            if r[0] == "const" and backend.may_share_memory(r[1], data):
                return None
    return g


def _build_kernel(g, examples, readers, ret, cpu=True):
    env = {}
    inputs = []
    in_key = {}
    for m in g.members:
        _, refs, build, out, _ = _view(m)
        args = []
        for r in refs:
            if r[0] == "py":
                args.append(None)
                continue
            if r[0] == "slot" and r[1] in env:
                args.append(env[r[1]])
                continue
            k = _ref_key(r) if r[0] != "var" else ("var", id(r[1]))
            name = in_key.get(k)
            if name is None:
                name = in_key[k] = "a%d" % len(inputs)
                inputs.append(r)
            args.append(symbolic.var(name))
        env[out] = symbolic.const(build(*args))
    g.outputs = [s for s in g.slots if readers.get(s) or s in ret]
    g.outputs.sort()
    roots = [env[s] for s in g.outputs]
    for v, how, s in g.stores:
        k = ("var", id(v))
        if how != "assign" and k not in in_key:
            in_key[k] = "a%d" % len(inputs)
            inputs.append(("var", v))
        old = symbolic.var(in_key[k]) if how != "assign" else None
        roots.append(env[s] if how == "assign" else (old + env[s] if how == "add" else old - env[s]))
    g.inputs = inputs
    in_shapes = []
    for r in inputs:
        a = examples[r[1]] if r[0] == "slot" else (r[1]._data if r[0] == "var" else r[1])
        in_shapes.append(_input_kind(tuple(a.shape), g.shape))
    g.in_kinds = in_shapes
    g.cols = int(g.shape[-1]) if g.shape else 1
    g.out_dtypes = [examples[s].dtype for s in g.outputs] + [v._data.dtype for v, _, _ in g.stores]
    g.roots = roots
    g.in_dtypes = [(examples[r[1]] if r[0] == "slot" else (r[1]._data if r[0] == "var" else r[1])).dtype
                   for r in inputs]
    g.source, g.fn = _compile_group(g, g.roots, in_shapes, cpu)


_group_cache = {}
_group_lock = threading.Lock()


def _compile_group(g, roots, kinds, cpu=True):
    names = tuple("a%d" % i for i in range(len(kinds)))
    lines, res = codegen._lines(roots, codegen._PY, codegen._py_float, codegen._nb_call, erf_gauss=True,
                                arrays=names)
    params = ["o%d" % i for i in range(len(roots))] + list(names) + ["cols"]
    body = ["def make(F, prange, exp, tanh, erf, erf_gauss):", "    def loop(%s):" % ", ".join(params)]
    if "row" in kinds:  # rows x columns: a row input is read at the column, without a division per element
        body += ["        rows = o0.size // cols if cols else 0", "        for r in prange(rows):",
                 "            for c in range(cols):", "                i = r * cols + c"]
    else:
        body.append("        for i in prange(o0.size):")
    pad = " " * (16 if "row" in kinds else 12)
    for nm, kind in zip(names, kinds):
        idx = {"same": "i", "scalar": "0", "row": "c"}[kind]
        body.append("%s%s_ = %s[%s]" % (pad, nm, nm, idx))
    body += ["%s%s = %s" % (pad, t, code) for t, _, code in lines]
    body += ["%so%d[i] = %s" % (pad, k, r) for k, r in enumerate(res)]
    body += ["", "    return loop"]
    src = "import math\n\n\n" + "\n".join(body) + "\n"
    if not cpu:  # a GPU plan launches the group's CUDA source (accel.cuda_plan); the text names the kernel
        return src, None
    key = (src, g.dtype)
    with _group_lock:
        fn = _group_cache.get(key)
        if fn is None:
            from accel import cpu_kernels  # noqa: PLC0415  (numba: loaded only when a plan fuses)

            ns = {}
            exec(compile(src, "<accel.function kernel %s>" % hashlib.sha1(src.encode()).hexdigest()[:12], "exec"), ns)
            fn = _group_cache[key] = cpu_kernels.jit_loop(ns["make"], g.dtype.type)
    return src, fn


def _numba_ready():
    from accel import cpu_kernels  # noqa: PLC0415

    return backend.fused_mode() != "never" and cpu_kernels.available()


def _fusion_ready(xp):
    """Host plans fuse through numba; GPU plans through NVRTC (CuPy compiles the groups' CUDA)."""
    return _numba_ready() if xp is np else backend.fused_mode() != "never"


# --- emitting the plan as one Python function ---------------------------------------------------

class MemoryPlan:
    """Where each intermediate lives. Every value is released after its last reader (`del` in the emitted
    plan); the outputs of fused kernels that never leave the plan (not returned, not handed to a host
    step, not viewed by a value that does) go to arena buffers that the plan keeps between calls, one
    buffer serving values whose lifetimes do not overlap: no allocation, no fresh pages, and the same
    pointers on every replay. Stores write Variables in place (see _store_group)."""

    def __init__(self, nodes, examples, out_refs, arg_arrays=None):
        returned = {r[1] for r in out_refs if r[0] == "slot"}
        last = {}  # slot -> the last node that reads it
        touched = {}  # slot -> the last node that reads or makes it
        for i, n in enumerate(nodes):
            for sl in _produced(n):
                touched[sl] = i
            for sl in _used_slots(n):
                touched[sl] = last[sl] = i
        self.release = collections.defaultdict(list)  # node index -> slots to drop after it
        for sl, i in touched.items():
            if sl not in returned:
                self.release[i].append(sl)
        escaped = set(returned)
        into = _into_candidates(nodes, examples, returned, arg_arrays or {})
        end = dict(last)  # a value's memory is in use until its last reader or the last reader of a view of it
        views = collections.defaultdict(set)  # slot -> earlier slots it may share memory with
        for n in nodes:
            if n[0] == "host" or (n[0] == "call" and not getattr(n[2], "borrows_inputs", False)):
                escaped.update(_used_slots(n))  # a host step may keep what it is given
            elif n[0] in ("op", "acall"):
                for o in _produced(n):
                    views[o].update(sl for sl in _used_slots(n) if backend.may_share_memory(examples[o], examples[sl]))
        for i in range(len(nodes) - 1, -1, -1):
            for o in _produced(nodes[i]):
                for sl in views.get(o, ()):
                    if o in escaped:
                        escaped.add(sl)
                    end[sl] = max(end.get(sl, i), end.get(o, i), i)
        self.buffers = []  # (shape, dtype)
        self.buffer_of = {}  # slot -> buffer index
        busy = []  # (end, buffer index)
        free = collections.defaultdict(list)  # (shape, dtype) -> buffer indices
        self.into = {}  # node index -> buffer index: a step whose one matmul writes into the arena (_Into)
        for i, n in enumerate(nodes):
            for e, b in [x for x in busy if x[0] < i]:
                busy.remove((e, b))
                free[self.buffers[b]].append(b)
            if n[0] == "kernel":
                produced = n[1].outputs
            elif i in into:
                produced = _produced(n)
            else:
                continue
            for sl in produced:
                if sl in escaped or sl not in end:
                    continue
                spec = (tuple(examples[sl].shape), examples[sl].dtype)
                b = free[spec].pop() if free[spec] else None
                if b is None:
                    b = len(self.buffers)
                    self.buffers.append(spec)
                self.buffer_of[sl] = b
                busy.append((end[sl], b))
                if n[0] != "kernel":
                    self.into[i] = b
        self.arena_bytes = sum(int(np.prod(sh, dtype=np.int64)) * dt.itemsize for sh, dt in self.buffers)
        self.escaped = escaped

    def allocate(self, xp=np):
        return [xp.empty(sh, dt) for sh, dt in self.buffers]


class _Into:
    """An array namespace whose matmul writes into a given buffer, so that a plan step whose result is one
    matmul (an op's forward, a gradient rule: code that takes the namespace as its first argument) computes
    straight into its arena buffer: a GEMM output of fresh pages costs a page fault per 4 KiB."""

    __slots__ = ("xp", "out", "calls")

    def __init__(self, xp, out):
        self.xp = xp
        self.out = out
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self.xp, name)

    def matmul(self, a, b):
        self.calls += 1
        return self.xp.matmul(a, b, out=self.out)


def _example(r, examples, arg_arrays):
    if r[0] == "slot":
        return examples[r[1]]
    if r[0] == "var":
        return r[1]._data
    if r[0] == "arg_var":
        return arg_arrays[r[1]]
    if r[0] in ("const", "py"):
        return r[1]
    return r[1](_example(e, examples, arg_arrays) for e in r[2])  # "seq"


def _namespace_step(n):
    """(fn, argument refs, kwargs) of a step whose code takes the array namespace first (an op's forward, a
    rule given the namespace), so a namespace with another matmul can stand in for it (_Into, _OwnGemm);
    else None."""
    if n[0] == "op":
        return n[1].forward, n[2], n[3]
    if n[0] == "acall" and n[2] and n[2][0][0] == "py" and hasattr(n[2][0][1], "matmul"):
        return n[1], n[2][1:], n[3]
    return None


def _into_candidates(nodes, examples, returned, arg_arrays):
    """The nodes (index -> slot) whose one output _Into can put in a buffer: tried once on the traced
    values, accepted when the step's one matmul made its result in the buffer."""
    found = {}
    for i, n in enumerate(nodes):
        step = _namespace_step(n)
        if step is None or (n[1].multi_out if n[0] == "op" else n[5]):
            continue
        fn, refs, kwargs = step
        out = n[4][0]
        if out in returned or "matmul" not in getattr(getattr(fn, "__code__", None), "co_names", ()):
            continue
        try:
            args = [_example(r, examples, arg_arrays) for r in refs]
            into = _Into(backend.xp_of(examples[out]), backend.xp_of(examples[out]).empty_like(examples[out]))
            res = fn(into, *args, **kwargs)
        except Exception:  # noqa: BLE001  (any failure only means: no buffer for this step)
            continue
        if res is into.out and into.calls == 1:
            found[i] = out
    return found


def _emit(nodes, input_slots, out_refs, memory, mode="plain", xp=np, graphs=None, own_gemm=frozenset()):
    """The plan as Python source, compiled. mode "arena": fused kernels write into the MemoryPlan's buffers
    (the third argument); "count": every step is counted in this thread's accel.profiler profile; "graph":
    the segments in `graphs` ({start: (stop, inputs, outputs, GraphSegment)}) run as CUDA graphs. own_gemm:
    the indices of the steps whose matmuls run on accel's GEMM kernel (_OwnGemm) and whose optimizer update
    runs from device state (device_run, on the GPU): the steps of a whole-step graph."""
    ns = {"np": xp, "_GuardMiss": _GuardMiss, "_Into": _Into, "_OwnGemm": _OwnGemm, "_host": backend.to_numpy,
          "_Tensor": Tensor, "_step": _counted_step, "_kernel_step": _counted_kernel, "_detach": _detach}
    lines = ["def plan(inputs, arg_vars, B=None):"]
    if input_slots:
        lines.append("    %s, = inputs" % ", ".join("v%d" % s for s in input_slots))
    counter = [0]

    def name(obj, prefix):
        counter[0] += 1
        k = "%s%d" % (prefix, counter[0])
        ns[k] = obj
        return k

    def expr(r):
        kind = r[0]
        if kind == "slot":
            return "v%d" % r[1]
        if kind == "var":
            return name(r[1], "V") + "._data"
        if kind == "arg_var":
            return "arg_vars[%d]._data" % r[1]
        return name(r[1], "c")

    def aexpr(r):
        if r[0] == "py":
            return name(r[1], "p")
        if r[0] == "seq":
            inner = ", ".join(aexpr(e) for e in r[2])
            return "(%s%s)" % (inner, "," if len(r[2]) == 1 else "") if r[1] is tuple else "[%s]" % inner
        return expr(r)

    def call(label, fn, args):
        if mode == "count":
            return "_step(%r, %s, %s)" % (label, fn, args)
        return "%s(%s)" % (fn, args)

    defined = set(input_slots)
    skip_to = 0
    for i, n in enumerate(nodes):
        kind = n[0]
        seg = graphs.get(i) if graphs else None
        if seg is not None:
            stop, seg_in, seg_out, runner = seg
            c = "%s(%s)" % (name(runner, "G"), "".join("v%d, " % sl for sl in seg_in))
            lines.append("    %s%s" % ("%s, = " % ", ".join("v%d" % sl for sl in seg_out) if seg_out else "", c))
            defined.update(seg_out)
            skip_to = stop
        if i < skip_to:
            dead = [sl for sl in memory.release.get(i, ()) if sl in defined]
            if dead:
                lines.append("    del %s" % ", ".join("v%d" % sl for sl in dead))
                defined.difference_update(dead)
            continue
        defined.update(_produced(n))
        into = "_Into(%%s, B[%d])" % memory.into[i] if mode == "arena" and i in memory.into else (
            "_OwnGemm(%s)" if i in own_gemm else "%s")
        if kind == "op":
            _, op, refs, attrs, outs = n
            args = ", ".join([into % "np"] + [expr(r) for r in refs])
            if attrs:
                args += ", **" + name(attrs, "a")
            c = call(op.name, name(op.forward, "f"), args)
            var_refs = [expr(r) for r in refs if r[0] in ("var", "arg_var")]
            if var_refs:  # a view of a Variable's array is copied, as eager does (ops.core.detached)
                c = "_detach(%s, %s, (%s,))" % (c, op.multi_out, ", ".join(var_refs))
            if op.multi_out:
                lines.append("    %s, = %s" % (", ".join("v%d" % o for o in outs), c))
            else:
                lines.append("    v%d = %s" % (outs[0], c))
        elif kind == "acall":
            _, fn, refs, kwargs, outs, multi, op = n
            args = [aexpr(r) for r in refs]
            if refs:
                args[0] = into % args[0]
            c = call("grad:" + (op.name if op is not None else getattr(fn, "__name__", "step")), name(fn, "r"),
                     ", ".join(args) + ((", **" + name(kwargs, "a")) if kwargs else ""))
            if multi:
                t = "t%d" % counter[0]
                lines.append("    %s = %s" % (t, c))
                lines += ["    v%d = %s[%d]" % (o, t, j) for j, o in enumerate(outs) if o is not None]
                lines.append("    del %s" % t)
            else:
                lines.append("    v%d = %s" % (outs[0], c))
        elif kind == "kernel":
            g = n[1]
            dest = ["B[%d]" % memory.buffer_of[s] if mode == "arena" and s in memory.buffer_of else "None"
                    for s in g.outputs] + [expr(("var", v)) for v, _, _ in g.stores]
            args = "(%s,), %s" % (", ".join(dest), ", ".join(expr(r) for r in g.inputs))
            k = name(g, "K")
            c = "_kernel_step(%s, %s)" % (k, args) if mode == "count" else "%s.run(%s)" % (k, args)
            lines.append("    %s%s" % ("%s, = " % ", ".join("v%d" % s for s in g.outputs) if g.outputs else "", c))
        elif kind == "assign":
            _, target, how, ref = n
            t = expr(target).rsplit("._data", 1)[0]
            lines.append("    %s._assign_%s(%s)" % (t, how, expr(ref)))
        elif kind == "call":
            _, what, fn, refs, writes = n
            run = fn.device_run if i in own_gemm and xp is not np else fn
            lines.append("    %s(%s)" % (name(run, "h"), ", ".join(expr(r) for r in refs)))
        elif kind == "host":
            _, make, slot = n
            lines.append("    v%d = %s()._data" % (slot, name(make, "m")))
        elif kind == "guard":
            _, slot, what, value = n
            if what == "value":
                lines.append("    if %s != _host(v%d):" % (name(value, "w"), slot))
            else:
                conv = "bool" if what == "bool()" else "int"
                lines.append("    if %s(_host(v%d).reshape(())[()]) != %r:" % (conv, slot, value))
            lines.append("        raise _GuardMiss()")
        dead = [sl for sl in memory.release.get(i, ()) if sl in defined]
        if dead:
            lines.append("    del %s" % ", ".join("v%d" % sl for sl in dead))
            defined.difference_update(dead)
    outs = ", ".join(expr(r) + (".copy()" if r[0] in ("var", "arg_var") else "") for r in out_refs)
    lines.append("    return (%s%s)" % (outs, "," if len(out_refs) == 1 else ""))
    src = "\n".join(lines) + "\n"
    exec(compile(src, "<accel.function plan>", "exec"), ns)
    return ns["plan"], src


def _detach(res, multi, var_arrays):
    """An op's result on a Variable's array, as eager returns it (accel.ops.core.detached)."""
    return [detached(r, var_arrays) for r in res] if multi else detached(res, var_arrays)


def _counted_step(label, fn, *args, **kwargs):
    """One op or rule of a plan replayed inside accel.profiler.profile(): counted as eager counts it."""
    prof = recorder.hooks.profile
    if prof is None:  # another thread profiles
        return fn(*args, **kwargs)
    prof.label = label
    res = fn(*[prof.counted(a) for a in args], **kwargs)
    if isinstance(res, (tuple, list)):
        return type(res)(prof.plain(r) for r in res)
    return prof.plain(res)


def _counted_kernel(g, dest, *arrays):
    """A fused kernel of a replayed plan: one device operation."""
    prof = recorder.hooks.profile
    outs = g.run(dest, *arrays)
    if prof is not None:
        nbytes = sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)) + sum(o.nbytes for o in outs) + \
            sum(v._data.nbytes for v, _, _ in g.stores)
        prof.note(nbytes, "fused kernel")
    return outs


def _graph_layout(plan, whole_step=False):
    """([(start, stop, inputs, outputs)], own): the plan's runs of steps a CUDA graph can hold
    (accel.cuda_plan.segments), and with whole_step the indices of the steps that go in because accel's own
    GEMM kernel serves their matmuls or their optimizer update reads its step on the device."""
    nodes = plan.nodes
    returned = {r[1] for r in plan.out_refs if r[0] == "slot"}

    def after_uses(stop):
        used = set(returned)
        for n in nodes[stop:]:
            used.update(_used_slots(n))
        return used

    own = _own_gemm_steps(nodes, plan._examples, plan.xp is not np) if whole_step else frozenset()
    return cuda_plan.segments(nodes, _used_slots, _produced, after_uses, whole_step=own), own


def _graph_segments(plan, whole_step=False):
    """{start: (stop, inputs, outputs, GraphSegment)} for the plan's capturable runs (accel.cuda_plan)."""
    layout, own = _graph_layout(plan, whole_step)
    out = {}
    for start, stop, inputs, outputs in layout:
        part = plan.nodes[start:stop]
        refs = [("slot", sl) for sl in outputs]
        run = _emit(part, inputs, refs, MemoryPlan(part, plan._examples, refs), xp=plan.xp,
                    own_gemm={i - start for i in own if start <= i < stop})[0]
        variables = []
        for n in part:
            for r in _node_refs(n):
                if r[0] == "var" and all(r[1] is not v for v in variables):
                    variables.append(r[1])
        # an optimizer's device step bakes its pointers and host scalars (lr) in: a change captures again
        keys = [n[2].device_key for n in part if n[0] == "call" and hasattr(n[2], "device_key")]
        runner = cuda_plan.GraphSegment(run, variables, [sl in plan.memory.escaped for sl in outputs],
                                        "steps %d-%d of %s" % (start, stop - 1, plan.name), capture=plan.xp is not np,
                                        keys=keys)
        out[start] = (stop, inputs, outputs, runner)
    return out


def graph_launch_calls(plan, whole_step=False):
    """What one replay of `plan` would launch on a GPU with CUDA graphs, derived from its segments (not
    measured): {"graphs", "copies" (a segment's inputs copied into its static buffers, its outputs that leave
    the plan copied out), "uncaptured" (steps run outside graphs), "in_graphs" (steps inside), "total"}."""
    layout, _ = _graph_layout(plan, whole_step)
    escaped = plan.memory.escaped
    in_graphs = sum(stop - start for start, stop, _, _ in layout)
    copies = sum(len(inputs) + sum(1 for sl in outputs if sl in escaped) for _, _, inputs, outputs in layout)
    uncaptured = len(plan.nodes) - in_graphs
    return {"graphs": len(layout), "copies": copies, "uncaptured": uncaptured, "in_graphs": in_graphs,
            "total": len(layout) + copies + uncaptured}


class _GemmProbe:
    """An array namespace that records the operands of each matmul it runs (see _own_gemm_steps)."""

    def __init__(self, xp):
        self.xp = xp
        self.pairs = []

    def __getattr__(self, name):
        return getattr(self.xp, name)

    def matmul(self, a, b, out=None):
        self.pairs.append((a, b))
        return self.xp.matmul(a, b, out=out)


class _OwnGemm:
    """An array namespace whose matmul runs accel's own GEMM kernel (accel.fused.gemm) on CuPy arrays it
    serves: a cuBLAS call cannot be captured into a CUDA graph. NumPy arrays (a host plan, run by segments
    as a GPU would) and operands the kernel does not take use the namespace's own matmul."""

    __slots__ = ("xp",)

    def __init__(self, xp):
        self.xp = xp

    def __getattr__(self, name):
        return getattr(self.xp, name)

    def matmul(self, a, b, out=None):
        if backend.is_cupy_array(a) and fused.gemm_serves(a, b):
            return fused.gemm(a, b, out=out)
        return self.xp.matmul(a, b, out=out)


def _own_gemm_steps(nodes, examples, on_gpu):
    """The indices of the steps that can sit in a whole-step CUDA graph although they call matmul (their
    code reaches no other capture breaker, and every matmul they ran on the traced values is one accel's
    GEMM kernel serves: tried once here), or are optimizer updates offering a device_run (a host plan:
    that would offer one with its arrays on a GPU)."""
    found = set()
    for i, n in enumerate(nodes):
        if n[0] == "call":
            if getattr(n[2], "capturable" if on_gpu else "capturable_on_gpu", False):
                found.add(i)
            continue
        step = _namespace_step(n)
        if step is None:
            continue
        fn, refs, kwargs = step
        if cuda_plan.breakers(fn) != {"matmul"}:
            continue
        try:
            args = [_example(r, examples, {}) for r in refs]
            probe = _GemmProbe(backend.xp_of(next((a for a in args if hasattr(a, "shape")), np.zeros(0))))
            fn(probe, *args, **kwargs)
        except Exception:  # noqa: BLE001  (a step that cannot be tried stays outside the graphs)
            continue
        if probe.pairs and all(fused.gemm_serves(a, b) for a, b in probe.pairs):
            found.add(i)
    return frozenset(found)


def _step_label(n):
    if n[0] == "op":
        return n[1].name
    if n[0] == "acall":
        return "the gradient rule of %s" % n[6].name if n[6] is not None else getattr(n[1], "__name__", "a rule")
    return n[0]


def _node_refs(n):
    """Every ref a node reads or writes (Variables included)."""
    kind = n[0]
    if kind == "op":
        return list(n[2])
    if kind == "acall":
        return list(_flat_refs(n[2]))
    if kind == "kernel":
        return list(n[1].inputs) + [("var", v) for v, _, _ in n[1].stores]
    if kind == "assign":
        return [n[1], n[3]]
    return []


def _flat_refs(refs):
    for r in refs:
        if r[0] == "seq":
            yield from _flat_refs(r[2])
        else:
            yield r


class _ArenaHolders:
    """The plans holding arena buffers, most recent last: past MAX_ARENAS, the oldest gives its buffers
    back (it allocates them again if it runs again), so many signatures cannot hold memory without bound."""

    MAX_ARENAS = 16

    def __init__(self):
        self._plans = collections.OrderedDict()
        self._lock = threading.Lock()

    def hold(self, plan):
        with self._lock:
            self._plans[id(plan)] = weakref.ref(plan)
            while len(self._plans) > self.MAX_ARENAS:
                old = self._plans.popitem(last=False)[1]()
                if old is not None and old._arena_lock.acquire(blocking=False):
                    old.arena = None
                    old._arena_lock.release()


_arenas = _ArenaHolders()


# --- plans for new shapes under a generic signature ------------------------------------------------

# op name -> {attribute: the index of the input whose shape it holds, or "sizes" (concat: each input's size
# on the axis)}: recorded as "the shape of that slot", so a derived plan recomputes it for the new shapes
_SHAPE_ATTRS = dict({n: {"shape": 0} for n in (
    "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "reduce_any", "reduce_all",
    "reduce_logsumexp", "tile", "getitem", "getitem_at")}, reshape={"in_shape": 0, "shape": "minus"},
    concat={"sizes": "sizes"})
# attributes that hold no size (axes, flags, dtypes, the caller's scalars)
_NO_SIZES = {"axis", "axes", "perm", "keepdims", "batch_dims", "dtype", "advanced", "adjoint", "lower",
             "full_matrices", "exclusive", "reverse", "descending", "approximate", "mode", "alpha", "eps", "keep",
             "scale", "on", "off", "value", "padding_value", "lo", "hi", "device", "source", "sign", "minus"}
# attributes whose ints the caller wrote as they are (an index, multiples, paddings, a target shape): a size in
# them came from reading a traced tensor's shape, which the trace notes (Tensor.shape, len, accel.shape)
_CALLER_INTS = {("getitem", "key"), ("getitem_at", "key"), ("tile", "multiples"), ("pad", "pads"), ("one_hot", "depth"),
                ("broadcast_to", "shape")}
# ...or nearly: a reshape's target has its -1 resolved by the wrapper (derived anew when `minus` says where);
# without that, a target that holds a generic size is not trusted
_SCANNED_INTS = {("reshape", "shape")}


def _input_shape(src, traced, examples):
    return traced if src[0] == "fixed" else tuple(examples[src[1]].shape)


def _reshape_target(src, traced, minus, examples):
    if src[0] == "fixed":
        return traced
    n = int(np.prod(examples[src[1]].shape, dtype=np.int64))
    known = int(np.prod([d for i, d in enumerate(traced) if i != minus], dtype=np.int64))
    return tuple(n // known if i == minus else d for i, d in enumerate(traced))


def _concat_sizes(sources, traced, axis, examples):
    return tuple(t if src[0] == "fixed" else int(examples[src[1]].shape[axis]) for src, t in zip(sources, traced))


def _ints_in(v, depth=0):
    """The Python/NumPy ints inside an attribute value (tuples, lists, dicts, slices, small int arrays)."""
    if isinstance(v, (bool, np.bool_)) or v is None or depth > 8:
        return
    if isinstance(v, (int, np.integer)):
        yield int(v)
    elif isinstance(v, (tuple, list)):
        for e in v:
            yield from _ints_in(e, depth + 1)
    elif isinstance(v, dict):
        for e in v.values():
            yield from _ints_in(e, depth + 1)
    elif isinstance(v, slice):
        yield from _ints_in((v.start, v.stop, v.step), depth + 1)
    elif isinstance(v, np.ndarray) and v.dtype.kind in "iu" and v.size <= 64:
        yield from (int(e) for e in v.reshape(-1))


def _arrays_in(v):
    if isinstance(v, (tuple, list)):
        for e in v:
            yield from _arrays_in(e)
    elif hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, np.generic):
        yield v


class _NotDerivable(Exception):
    def __init__(self, reason, permanent=False):
        super().__init__(reason)
        self.permanent = permanent  # the Python read a size that changes with the generic one: every size would miss


class _Recording:
    """What a trace recorded, kept with its plans so that a call with new concrete shapes under a generic
    signature gets a plan without running the Python again (`derive`): the recorded nodes run once,
    unfused and without side effects, on the new arrays, which gives every slot's new example, and the
    Plan is built from the same nodes for those examples (fusion and the memory plan depend on shapes).

    This is sound only where nothing the Python computed depends on a generic dimension's size. Where it
    might, derive returns None and the caller traces again (the Python runs, as before):
    - statically: a constant or random draw with a generic size in its shape, an int constant holding one,
      a caller-written int attribute (a reshape target, an index) equal to one, or the Python having read a
      generic dimension of an input (`x.shape[0]`; accel.shape);
    - on the new shapes: a node that raises, a guard that comes out differently, a dimension the Python
      read that changed, a node whose other int attributes (pads, split sizes) were made from its inputs'
      shapes and those changed, a value that becomes empty (or stops being) or changes dtype, a gradient the
      tape did not sum (it had its input's shape) that no longer has its input's shape (a broadcast that
      changed: the tape would have summed it), a Variable write or optimizer step given another shape.
    A size-1 traced dimension is the usual cause of the last one: a recording at another size serves size 1
    where the broadcast comes out the same."""

    def __init__(self, trace, input_slots, plan_refs, fuse, generic_dims, arg_vars):
        self.nodes = trace.nodes
        self.examples = trace.examples
        self.sym = trace.sym
        self.shape_reads = trace.shape_reads
        # the gradients the tape left as they were, by slot (the arrays are registered by now)
        self.grad_ties = [(trace.array_slot[id(a)], src, shape) for a, src, shape in trace.grad_ties
                          if id(a) in trace.array_slot and tuple(a.shape) == shape]
        self.guards_after_write = trace.guards_after_write
        self.fn_name = trace.fn_name
        self.input_slots = input_slots
        self.plan_refs = plan_refs
        self.fuse = fuse
        self.any_rank = [d == "rank" for d in generic_dims]  # inputs whose rank may change too
        self.generic_dims = [tuple(range(self.examples[s].ndim)) if d == "rank" else d
                             for s, d in zip(input_slots, generic_dims)]  # per input: its generic dimensions
        self.sizes = {int(self.examples[s].shape[d]) for s, dims in zip(input_slots, self.generic_dims)
                      for d in dims}
        self.arg_var_shapes = [tuple(v._data.shape) for v in arg_vars]
        self.xp = next((backend.xp_of(a) for a in trace.examples if backend.is_cupy_array(a)), np)
        self._checked = None  # (reason or None, nodes whose int attributes need unchanged input shapes)
        self._rank_free = None
        self.out_structure = self.post = None

    def rank_free(self):
        """True when no recorded step depends on a rank: only attribute-free ops (elementwise ones) on the
        inputs, Variables and scalar constants, no shape read, no random draw. Such a recording serves
        inputs of another rank under an unknown-rank signature (reduce_retracing after a change of rank)."""
        if self._rank_free is None:
            ok = not self.sym and not self.shape_reads
            for n in self.nodes:
                if not ok:
                    break
                if n[0] == "op":
                    ok = not any(k != "dtype" for k in n[3]) and all(
                        r[0] != "const" or np.ndim(r[1]) == 0 for r in n[2])
                elif n[0] == "acall":
                    ok = n[6] is not None and not any(k != "dtype" for k in n[3]) and all(
                        r[0] != "const" or np.ndim(r[1]) == 0 for r in _flat_refs(n[2]))
                elif n[0] in ("host", "guard"):
                    ok = False
            self._rank_free = ok and all(r[0] != "const" or np.ndim(r[1]) == 0 for r in self.plan_refs)
        return self._rank_free

    def static_check(self):
        if self._checked is None:
            try:
                self._checked = (None, self._scan())
            except _NotDerivable as e:
                self._checked = (str(e), frozenset())
        return self._checked

    def _scan(self):
        sizes = self.sizes
        if not sizes:
            raise _NotDerivable("no generic dimension")
        for s, dims in zip(self.input_slots, self.generic_dims):
            read = self.shape_reads.get(s, ())
            if read is None or set(read) & set(dims):
                raise _NotDerivable("the Python read a generic dimension of an input")

        def const(a):
            a = np.asarray(a) if not hasattr(a, "shape") else a
            if sizes & set(int(d) for d in a.shape):
                raise _NotDerivable("a constant of shape %s" % (tuple(a.shape),))
            if a.dtype.kind in "iu" and a.size <= 64 and sizes & set(_ints_in(backend.to_numpy(a))):
                raise _NotDerivable("an int constant holding a generic size")

        fixed = set()
        traced = {id(a) for a in self.examples}
        for r in self.plan_refs:
            if r[0] == "const":
                const(r[1])
        for i, n in enumerate(self.nodes):
            kind = n[0]
            sym = self.sym.get(i, {})
            if kind == "host":
                const(self.examples[n[2]])
                continue
            if kind == "assign":
                if n[3][0] == "const":
                    const(n[3][1])
                continue
            if kind == "call":
                for r in n[3]:
                    if r[0] == "const":
                        const(r[1])
                continue
            if kind not in ("op", "acall"):
                continue
            op = n[1] if kind == "op" else n[6]
            attrs = n[3]
            refs = n[2] if kind == "op" else tuple(_flat_refs(n[2]))
            for r in refs:
                if r[0] == "const":
                    const(r[1])
            extra = []
            if kind == "acall":
                extra = [(j, r[1]) for j, r in enumerate(n[2]) if r[0] == "py" and ("arg", j) not in sym]
            name = op.name if op is not None else None
            for k, v in list(attrs.items()) + [(("arg", j), v) for j, v in extra]:
                if any(id(a) in traced for a in _arrays_in(v)):  # a traced tensor's value frozen into an index
                    raise _NotDerivable("%s's %s holds a traced value" % (name, k))
                if k in sym or k in _NO_SIZES:
                    continue
                ints = set(_ints_in(v))
                if not ints:
                    continue
                if (name, k) in _SCANNED_INTS:
                    if ints & sizes:
                        raise _NotDerivable("%s's %s %r holds a generic size" % (name, k, v))
                elif (name, k) not in _CALLER_INTS or any(True for _ in _arrays_in(v)):  # an index array
                    fixed.add(i)
        return frozenset(fixed)

    def derive(self, arrays, arg_vars):
        """A Plan for these inputs' shapes, or None where it cannot be derived soundly (see the class)."""
        reason, fixed = self.static_check()
        if reason is not None:
            return None
        if [tuple(v._data.shape) for v in arg_vars] != self.arg_var_shapes or len(arrays) != len(self.input_slots):
            return None
        ranks = False
        for s, a, any_rank in zip(self.input_slots, arrays, self.any_rank):
            old = self.examples[s]
            if a.ndim != old.ndim:
                if not (any_rank and self.rank_free()):
                    return None
                ranks = True
            if a.dtype != old.dtype or (a.ndim == old.ndim and not self._reads_ok(s, a)):
                return None
        try:
            ex = self._dry_run(arrays, arg_vars, fixed, ranks)
        except _NotDerivable as e:
            self.last_miss = str(e)
            if e.permanent:
                self._checked = (self.last_miss, frozenset())
                self.permanent_miss = True
            return None
        except Exception as e:  # an op that refuses the new shapes: trace again, which reports it as eager does
            self.last_miss = "%s: %s" % (type(e).__name__, e)
            return None
        nodes = [self._resolved(n, self.sym[i], ex) if i in self.sym else n for i, n in enumerate(self.nodes)]
        trace = _DerivedTrace(nodes, ex, self.guards_after_write, self.fn_name, arg_vars)
        try:
            plan = Plan(trace, self.input_slots, self.plan_refs, None, self.fuse)
        except Exception as e:  # a step the plan cannot take at these shapes: trace again
            self.last_miss = "building the plan: %s: %s" % (type(e).__name__, e)
            return None
        plan.arg_shapes = [tuple(a.shape) for a in arrays]
        plan.out_structure = self.out_structure
        plan.post = self.post
        plan.recording = self
        plan.derived = True
        return plan

    def _reads_ok(self, slot, a):
        read = self.shape_reads.get(slot, ())
        old = self.examples[slot].shape
        if read is None:
            return tuple(a.shape) == tuple(old)
        return all(a.shape[d] == old[d] for d in read)

    @staticmethod
    def _resolved(n, sym, ex):
        if n[0] == "op":
            return n[:3] + (dict(n[3], **{k: f(ex) for k, f in sym.items()}),) + n[4:]
        kw = dict(n[3], **{k: f(ex) for k, f in sym.items() if isinstance(k, str)})
        refs = tuple(("py", sym[("arg", j)](ex)) if ("arg", j) in sym else r for j, r in enumerate(n[2]))
        return n[:2] + (refs, kw) + n[4:]

    def _dry_run(self, arrays, arg_vars, fixed, ranks=False):
        """Every slot's array for these inputs: the recorded nodes run unfused, writing nothing (no Variable
        assign, no optimizer step, no print, no new random draw), and checked as the class says."""
        old = self.examples
        ex = list(old)
        for s, a in zip(self.input_slots, arrays):
            ex[s] = a
        xp = self.xp

        def val(r):
            kind = r[0]
            if kind == "slot":
                return ex[r[1]]
            if kind == "var":
                return r[1]._data
            if kind == "arg_var":
                return arg_vars[r[1]]._data
            if kind == "seq":
                return r[1](val(e) for e in r[2])
            return r[1]  # const, py

        def same_inputs(refs):
            return all(ex[r[1]].shape == old[r[1]].shape for r in refs if r[0] == "slot")

        def produced(slots, new_refs):
            for o in slots:
                a, b = ex[o], old[o]
                if not hasattr(a, "shape") or a.dtype != b.dtype or (a.ndim != b.ndim and not ranks) or \
                        (0 in a.shape) != (0 in b.shape) or not self._reads_ok(o, a):
                    raise _NotDerivable("step %d: the dtype, rank, emptiness or a dimension the Python read of "
                                        "slot %d changed" % (i, o), permanent=not self._reads_ok(o, a))
                if not ranks:
                    continue
                for r in new_refs:  # another rank: only scalars and inputs of the output's shape
                    if r[0] in ("slot", "const", "var", "arg_var"):
                        x_new, x_old = val(r), (old[r[1]] if r[0] == "slot" else val(r))
                        if not (x_new.ndim == x_old.ndim == 0 or (x_new.shape == a.shape and x_old.shape == b.shape)):
                            raise _NotDerivable("step %d: at another rank, an input shaped unlike its output" % i)

        for i, n in enumerate(self.nodes):
            kind = n[0]
            if kind in ("op", "acall") and i in self.sym:
                n = self._resolved(n, self.sym[i], ex)
            if kind == "op":
                _, op, refs, attrs, outs = n
                if i in fixed and not same_inputs(refs):
                    raise _NotDerivable("step %d: %s has int attributes and inputs of new shapes" % (i, op.name))
                args = [val(r) for r in refs]
                res = op.forward(xp, *args, **attrs)
                var_arrays = tuple(val(r) for r in refs if r[0] in ("var", "arg_var"))
                if var_arrays:
                    res = _detach(res, op.multi_out, var_arrays)
                res = list(res) if op.multi_out else [res]
                if len(res) != len(outs):
                    raise _NotDerivable("step %d: another number of outputs" % i)
                for o, a in zip(outs, res):
                    ex[o] = a
                produced(outs, refs)
            elif kind == "acall":
                _, fn, refs, kwargs, outs, multi, op = n
                flat = list(_flat_refs(refs))
                if i in fixed and not same_inputs(flat):
                    raise _NotDerivable("step %d: a backward step with int arguments, inputs of new shapes" % i)
                res = fn(*[val(r) for r in refs], **kwargs)
                if multi:
                    res = list(res)
                    if len(res) != len(outs):
                        raise _NotDerivable("step %d: another number of outputs" % i)
                    for o, a in zip(outs, res):
                        if o is not None:
                            if a is None:
                                raise _NotDerivable("step %d: a gradient is missing" % i)
                            ex[o] = a
                else:
                    ex[outs[0]] = res
                produced([o for o in outs if o is not None], [r for r in flat if r[0] != "py"])
            elif kind == "guard":
                _, s, what, value = n
                if _py_value(backend.to_numpy(ex[s]), what) != value:
                    raise _NotDerivable("step %d: a guard comes out differently" % i)
            elif kind == "assign":
                r = n[3]
                if r[0] == "slot" and ex[r[1]].shape != old[r[1]].shape:
                    raise _NotDerivable("step %d: a Variable assigned a value of another shape" % i)
            elif kind == "call" and n[4]:  # an optimizer step: the gradients it gets keep their shapes
                if not same_inputs(n[3]):
                    raise _NotDerivable("step %d: an optimizer step given gradients of new shapes" % i)
            # host (a random draw of a fixed shape): its traced example stands for the new one
        for slot, src, shape in self.grad_ties:
            new_shape = shape if src is None or src[0] == "fixed" else ex[src[1]].shape  # None: a constant's
            if tuple(ex[slot].shape) != tuple(new_shape):
                raise _NotDerivable("the gradient in slot %d had its input's shape and no longer has it (a broadcast "
                                    "that changed: the tape would have summed it)" % slot)
        return ex


class _DerivedTrace:
    """The fields of a Trace that Plan reads, for a plan derived for new shapes."""

    def __init__(self, nodes, examples, guards_after_write, fn_name, arg_vars):
        self.nodes = nodes
        self.examples = examples
        self.guards_after_write = guards_after_write
        self.fn_name = fn_name
        self.var_args = {id(v): i for i, v in enumerate(arg_vars)}
        self.variables = {i: v for i, v in enumerate(arg_vars)}  # what Plan reads: the Variable arguments


def _generic_dims(key, arrays):
    """Per traced input array (in order): the indices of its dimensions the signature leaves generic, or
    "rank" where even its rank is (reduce_retracing after a change of rank)."""
    out = []
    leaves = [k for k in key[2] if k[0] == "tensor"]
    for k, _a in zip(leaves, arrays):
        shape = k[1]
        if shape == "unknown":
            out.append("rank")
        else:
            out.append(tuple(d for d, s in enumerate(shape) if s is None))
    return out


def _key_fits(key, generic):
    """True when concrete signature `key` is an instance of `generic` (same structure, None matching any size)."""
    if key[0] != generic[0] or key[1] != generic[1] or len(key[2]) != len(generic[2]):
        return False
    for k, g in zip(key[2], generic[2]):
        if k[0] != g[0]:
            return False
        if k[0] in ("tensor", "var"):
            if k[2] != g[2] or not isinstance(k[1], tuple) or not isinstance(g[1], tuple) or len(k[1]) != len(g[1]):
                return False
            if any(b is not None and a != b for a, b in zip(k[1], g[1])):
                return False
        elif k != g:
            return False
    return True


# --- Function and ConcreteFunction ------------------------------------------------------------

class ConcreteFunction:
    """The traces of one signature: one Plan per path through the guards (most recent first)."""

    def __init__(self, function, key):
        self.function = function
        self.key = key
        self.plans = []
        self.structured_input_signature = key

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)

    def explain(self):
        return self.function.explain()


class Function:
    """The callable accel.function returns (tf.function's semantics; see the module docstring)."""

    def __init__(self, python_function, input_signature=None, reduce_retracing=False, jit_compile=None,
                 name=None):
        if input_signature is not None:
            input_signature = [s if isinstance(s, TensorSpec) else TensorSpec(*s) for s in input_signature]
        self.python_function = python_function
        self.input_signature = input_signature
        self.reduce_retracing = reduce_retracing
        self.jit_compile = jit_compile
        self.__name__ = name or getattr(python_function, "__name__", "function")
        functools.update_wrapper(self, python_function, updated=())
        try:
            self._sig = inspect.signature(python_function)
        except (TypeError, ValueError):
            self._sig = None
        self._cache = collections.OrderedDict()  # key -> ConcreteFunction
        self._fast = {}  # positional Tensor / Python-scalar arguments' key -> the full key
        # the fast key serves functions whose parameters are all plain positional ones without defaults
        params = list(self._sig.parameters.values()) if self._sig is not None else None
        plain = params is not None and all(
            p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
        self._n_plain = len(params) if plain else -1
        self._last_key = None
        self._generic = {}  # reduce_retracing: leaf path -> generalized shape
        self._traces = 0
        self._history = collections.deque(maxlen=10)
        self._detector = _TracingDetector.of(python_function)
        self._lock = threading.RLock()
        self._first_traced = False
        self._evicted = False
        self._spec_keys = []  # generic signatures traced by get_concrete_function(TensorSpec with None dims)

    # descriptor: a method decorated with accel.function binds to its instance
    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        bound = self.__dict__.get("_bound")
        if bound is None:
            bound = self.__dict__["_bound"] = weakref.WeakKeyDictionary()
        try:
            f = bound.get(obj)
        except TypeError:
            f = None
        if f is None:
            f = Function(self.python_function.__get__(obj, objtype), self.input_signature, self.reduce_retracing,
                         self.jit_compile, self.__name__)
            try:
                bound[obj] = f
            except TypeError:
                pass
        return f

    def experimental_get_tracing_count(self):
        return self._traces

    def _cache_size(self):
        return len(self._cache)

    # -- keys --
    def _canonical(self, args, kwargs):
        if self._sig is not None:
            try:
                b = self._sig.bind(*args, **kwargs)
                b.apply_defaults()
                return tuple(b.arguments.items())
            except TypeError:
                pass
        return tuple(enumerate(args)) + tuple(sorted(kwargs.items()))

    def _key(self, named):
        leaves = []
        structure = _flatten([v for _, v in named], (), leaves)
        names = tuple(k for k, _ in named)
        keys = []
        for path, x in leaves:
            generic = None
            if self.input_signature is not None and isinstance(x, (Tensor, np.ndarray)):
                generic = self._spec_shape(path, x)
            elif self.reduce_retracing and isinstance(x, (Tensor, np.ndarray)):
                generic = self._relaxed(path, x)
            keys.append(_leaf_key(x, generic))
        return (names, structure, tuple(keys)), leaves, structure

    def _convert_to_specs(self, args):
        """Python and NumPy values under an input_signature become tensors of their spec's dtype, as in TF
        (a value that does not fit its spec is then refused by the shape check)."""
        from accel.ops.core import convert  # noqa: PLC0415

        out = list(args)
        for i, (a, spec) in enumerate(zip(args, self.input_signature)):
            if not isinstance(a, Tensor) and isinstance(a, (bool, int, float, list, tuple, np.ndarray, np.generic)):
                try:
                    out[i] = convert(np.asarray(a, dtype=spec.dtype.as_numpy_dtype))
                except (TypeError, ValueError) as e:
                    raise TypeError("Binding inputs to accel.function %r failed: argument %d (%r) cannot be "
                                    "converted to %r: %s" % (self.__name__, i, a, spec, e)) from None
        return out

    def _spec_shape(self, path, x):
        i = path[0]
        if i >= len(self.input_signature):
            raise TypeError("%s: got %d tensor arguments, input_signature has %d specs" % (
                self.__name__, i + 1, len(self.input_signature)))
        spec = self.input_signature[i]
        a = x._data if isinstance(x, Tensor) else np.asarray(x)
        if not spec.is_compatible_with(a):
            raise TypeError("Binding inputs to accel.function %r failed: argument %d (%s %s) does not match %r" % (
                self.__name__, i, a.dtype, TensorShape(a.shape), spec))
        return tuple(spec.shape.as_list()) if spec.shape.rank is not None else None

    def _relaxed(self, path, x):
        a = x._data if isinstance(x, Tensor) else np.asarray(x)
        shape = tuple(a.shape)
        prev = self._generic.get(path)
        if prev is None:
            self._generic[path] = shape
            return shape
        if prev == "unknown":
            return "unknown"
        if len(prev) != len(shape):
            self._generic[path] = "unknown"
            return "unknown"
        gen = tuple(p if p == s else None for p, s in zip(prev, shape))
        self._generic[path] = gen
        return gen

    # -- calling --
    def __call__(self, *args, **kwargs):
        if recorder.state.trace is not None:  # called while another function traces: inline it
            return self.python_function(*args, **kwargs)
        self._detector.calls += 1
        fast = None
        if not kwargs and self._n_plain == len(args) and self.input_signature is None and not self.reduce_retracing:
            fast = _fast_key(args)
            if fast is not None:
                cf = self._cache.get(self._fast.get(fast))
                if cf is not None:
                    arrays = [a._data for a in args if type(a) is Tensor]
                    for plan in cf.plans:
                        result = self._replay(plan, arrays, ())
                        if result is not _MISS:
                            return result
        result = self._call_slow(args, kwargs)
        if fast is not None and self._last_key is not None:
            if len(self._fast) > 4 * MAX_CACHED:
                self._fast.clear()
            self._fast[fast] = self._last_key
        return result

    def _call_slow(self, args, kwargs):
        if self.input_signature is not None:
            args = self._convert_to_specs(args)
        named = self._canonical(args, kwargs)
        key, leaves, structure = self._key(named)
        self._last_key = key
        with self._lock:
            cf = self._cache.get(key)
            if cf is None and self._spec_keys:  # a generic trace made by get_concrete_function(TensorSpec)
                generic = next((g for g in self._spec_keys if _key_fits(key, g)), None)
                if generic is not None:
                    key = generic
                    cf = self._cache.get(key)
                    self._last_key = None  # the fast path does not check shapes: it must not reach this one
            if cf is not None:
                self._cache.move_to_end(key)
        tensors = [x for _, x in leaves
                   if isinstance(x, (Tensor, np.ndarray, np.generic)) and not getattr(x, "_is_variable", False)]
        arrays = [x._data if isinstance(x, Tensor) else np.asarray(x) for x in tensors]
        arg_vars = [x for _, x in leaves if getattr(x, "_is_variable", False)]
        if cf is not None:
            shapes = [tuple(a.shape) for a in arrays]
            for i, plan in enumerate(cf.plans):
                if plan.arg_shapes != shapes:
                    continue
                result = self._replay(plan, arrays, arg_vars)
                if result is not _MISS:
                    if i and len(cf.plans) >= MAX_PLANS:  # the plans of a generic signature are kept LRU
                        with self._lock:
                            if plan in cf.plans:
                                cf.plans.remove(plan)
                                cf.plans.insert(0, plan)
                    return result
            result = self._derive(cf, arrays, arg_vars)
            if result is not _MISS:
                return result
            counted = not cf.plans  # the trace after a variable-creating first trace counts, as TF's second
        else:
            cf = ConcreteFunction(self, key)
            counted = True
        return self._trace(cf, key, named, leaves, structure, arrays, arg_vars, counted)

    def _derive(self, cf, arrays, arg_vars):
        """New concrete shapes under a generic signature: a plan derived from a recording of this signature
        (no Python runs; _Recording says when it cannot be), replayed; else _MISS (the caller traces)."""
        if getattr(cf, "underived", False):
            return _MISS
        recordings = []
        for plan in cf.plans:
            rec = getattr(plan, "recording", None)
            if rec is not None and all(rec is not r for r in recordings):
                recordings.append(rec)
        for rec in recordings:
            plan = rec.derive(arrays, arg_vars)
            if plan is None:
                if getattr(rec, "permanent_miss", False):
                    # the Python reads a size that changes with the generic one: its later traces will too,
                    # so this signature stops trying (each try runs the recorded steps up to that read)
                    cf.underived = True
                continue
            with self._lock:
                cf.plans.insert(0, plan)
                del cf.plans[MAX_PLANS:]
            result = self._replay(plan, arrays, arg_vars)
            if result is not _MISS:
                return result
        return _MISS

    def _replay(self, plan, arrays, arg_vars):
        snap = _snapshot(plan) if plan.snapshot else None
        try:
            outs = plan.execute(arrays, arg_vars)
        except _GuardMiss:
            if snap is not None:
                _restore(snap)
            return _MISS
        return _pack(plan.out_structure, iter(outs), _wrap_out)

    def _trace(self, cf, key, named, leaves, structure, arrays, arg_vars, counted):
        trace = Trace(self.__name__, first_trace=not self._first_traced)
        trace.var_args = {id(v): i for i, v in enumerate(arg_vars)}
        call_leaves = []
        input_slots = []
        seen_arrays = set()
        for _path, x in leaves:
            if isinstance(x, (Tensor, np.ndarray, np.generic)) and not getattr(x, "_is_variable", False):
                t = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
                data = t._data
                if id(data) in seen_arrays:  # one tensor passed as two arguments: two parameters, as in TF
                    data = data.copy()
                seen_arrays.add(id(data))
                t = Tensor(data)  # a fresh tensor per call: the trace's input
                input_slots.append(trace.new_slot(t))
                call_leaves.append(t)
            else:
                call_leaves.append(x)
        it = iter(call_leaves)
        call_args = [_pack(s, it, lambda v: v) for s in structure[1]] if structure else []
        names = [k for k, _ in named]
        kw = {}
        pos = []
        params = self._sig.parameters if self._sig is not None else {}
        for k, v in zip(names, call_args):
            p = params.get(k) if isinstance(k, str) else None
            if p is not None and p.kind == p.VAR_POSITIONAL:
                pos.extend(v)
            elif p is not None and p.kind == p.VAR_KEYWORD:
                kw.update(v)
            elif p is not None and p.kind == p.KEYWORD_ONLY:
                kw[k] = v
            elif isinstance(k, str) and p is None:
                kw[k] = v
            else:
                pos.append(v)
        if counted:
            self._traces += 1  # counted when it starts, as TF counts a trace that raises
        old = recorder.state.trace
        prev_hook = recorder.hooks.set_trace(trace)
        try:
            result = self.python_function(*pos, **kw)
            out_leaves = []
            out_structure = _flatten(result, (), out_leaves, sort_keys=False) if result is not None else _NO_RESULT
            out_refs = []
            for _, v in out_leaves:
                if isinstance(v, Tensor):
                    out_refs.append(trace.ref(v))
                else:
                    out_refs.append(("pyconst", v))
            if any(getattr(v, "_is_variable", False) for _, v in out_leaves):
                # a returned Variable is the value read, as TF returns it (later assigns do not reach it)
                result = _pack(out_structure, iter(v for _, v in out_leaves),
                               lambda v: Tensor(v._data.copy()) if getattr(v, "_is_variable", False) else v)
        finally:
            recorder.hooks.set_trace(prev_hook)
            assert recorder.state.trace is old or old is None
        self._first_traced = True
        # jit_compile=True fuses every elementwise chain (results within a few ulp of eager); the default
        # fuses only what stays bitwise equal to eager (no exp/log/tanh/erf in a fused loop); False: none
        fuse = {True: True, False: False}.get(self.jit_compile, "exact")
        plan_refs = [r for r in out_refs if r[0] != "pyconst"]
        plan = Plan(trace, input_slots, plan_refs, None, fuse)
        plan.arg_shapes = [tuple(a.shape) for a in arrays]
        plan.out_structure = out_structure
        if any(r[0] == "pyconst" for r in out_refs):
            plan.post = functools.partial(_with_pyconsts, out_refs)
        if result is None:
            plan.post = _returns_none
        generic = _generic_dims(key, arrays)
        if any(generic):  # new concrete shapes of this signature derive their plans from this recording
            rec = plan.recording = _Recording(trace, input_slots, plan_refs, fuse, generic, arg_vars)
            rec.out_structure, rec.post = plan.out_structure, plan.post
        with self._lock:
            # a trace that created variables (a lazily built model or optimizer) may have read them before
            # they existed (an optimizer's initial loss scale): like TF, which traces such a first call twice,
            # the next call traces again, with the variables in place, and only that plan is kept
            if not trace.created_variables:
                cf.plans.insert(0, plan)
                del cf.plans[MAX_PLANS:]
            if counted:
                if key not in self._cache:
                    self._note_retrace(key)
                self._cache[key] = cf
                while len(self._cache) > MAX_CACHED:
                    self._cache.popitem(last=False)
                    if not self._evicted:
                        self._evicted = True
                        warnings.warn("accel.function %r: more than %d signatures; the least recently used "
                                      "traces are dropped (pass tensors instead of changing Python values)"
                                      % (self.__name__, MAX_CACHED), RuntimeWarning, stacklevel=3)
        return result

    def _note_retrace(self, key):
        self._history.append(key)
        if not self._detector.traced():
            return
        names, _, leaves = key
        changing = _changing_argument(list(self._history), names)
        in_window = len(self._detector.trace_calls)
        rewrapped = "" if self._traces >= in_window else (
            " (this accel.function object traced %d of them: the same Python function is wrapped anew, e.g. inside "
            "a loop; wrap it once)" % self._traces)
        warnings.warn(
            "%d of the last %d calls to accel.function %r traced%s%s. Tracing is expensive: pass tensors (not "
            "Python numbers) for values that change between calls, or give an input_signature / "
            "reduce_retracing=True for changing shapes." % (
                in_window, RETRACE_WARN_WINDOW, self.__name__, rewrapped,
                "; the argument that keeps changing is %r" % changing if changing else ""),
            RuntimeWarning, stacklevel=3)

    def get_concrete_function(self, *args, **kwargs):
        named = self._canonical(args, kwargs)
        key, _, _ = self._key(named)
        cf = self._cache.get(key)
        if cf is None:
            specs = [a for a in args]
            concrete_args = [np.zeros([d or 1 for d in s.shape.as_list()], s.dtype.as_numpy_dtype)
                             if isinstance(s, TensorSpec) else s for s in specs]
            generic = self._spec_key(specs, concrete_args, kwargs)
            if generic is not None and generic not in self._spec_keys:
                # TF traces a TensorSpec with None dimensions once, generically: later calls whose shapes fit
                # it use that trace (plans for their shapes are derived from it, see _Recording)
                self._spec_keys.append(generic)
                del self._spec_keys[:-MAX_PLANS]
            self(*concrete_args, **kwargs)
            key, _, _ = self._key(self._canonical(concrete_args, kwargs))
            cf = self._cache.get(key)
            if cf is None:
                cf = self._cache.get(next((g for g in self._spec_keys if _key_fits(key, g)), None))
        return cf

    def _spec_key(self, specs, concrete_args, kwargs):
        """The generic key of get_concrete_function's TensorSpecs with None dimensions (positional ones, with
        no input_signature or reduce_retracing), else None."""
        if self.input_signature is not None or self.reduce_retracing or not any(
                isinstance(s, TensorSpec) and s.shape.rank is not None and None in s.shape.as_list() for s in specs):
            return None
        key, leaves, _ = self._key(self._canonical(concrete_args, kwargs))
        by_arg = {id(c): s for s, c in zip(specs, concrete_args) if isinstance(s, TensorSpec)}
        out = []
        for (_path, x), k in zip(leaves, key[2]):
            s = by_arg.get(id(x))
            if s is not None and k[0] == "tensor":
                k = (k[0], tuple(s.shape.as_list()), k[2])
            out.append(k)
        return key[0], key[1], tuple(out)

    def explain(self):
        """What was captured for each signature: recorded and planned ops, fused kernels, guards."""
        lines = ["accel.function %r: %d trace(s)" % (self.__name__, self._traces)]
        for key, cf in self._cache.items():
            for p in cf.plans:
                c = p.counts()
                lines.append("  signature %s: %d recorded ops -> %d ops + %d fused kernels + %d backward rule calls, "
                             "%d host steps, %d guards; peak of intermediates %d bytes, of which %d in %d arena "
                             "buffers kept between calls; %d Variables written in place by kernels"
                             % (_short_key(key), c["recorded_ops"], c["ops"], c["fused_kernels"], c["rule_calls"],
                                c["host_steps"], c["guards"], c["peak_bytes"], c["arena_bytes"],
                                c["arena_buffers"], c["stores"]))
                if getattr(p, "derived", False):
                    lines[-1] += "; derived for input shapes %s (the Python did not run)" % (p.arg_shapes,)
                for g in p.kernels:
                    lines.append("    kernel " + g.describe())
                for _, slot, what, value in p.guards:
                    made = next(("the result of " + _step_label(n) for n in p.trace_nodes if slot in _produced(n)),
                                "an input")
                    lines.append("    guard: %s of %s was %r when traced (a call where it differs traces that path)"
                                 % (what, made, value))
            rec = next((p.recording for p in cf.plans if getattr(p, "recording", None) is not None), None)
            miss = rec is not None and (rec.static_check()[0] or getattr(rec, "last_miss", None))
            if miss:
                lines.append("    a new shape of this signature traced again (the Python ran) because: " + miss)
        return "\n".join(lines)


class _TracingDetector:
    """TF's frequent-tracing detector: one per Python function's code object (a function wrapped anew per
    call shares it), warning when a call traces and RETRACE_WARN_AT of the calls in the window traced, at
    most RETRACE_WARN_MAX times. Calls are counted by each Function's __call__."""

    _all = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self):
        self.calls = 0
        self.trace_calls = []  # the call number of each trace still in the window
        self.warned = 0

    @classmethod
    def of(cls, fn):
        code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        if code is None:
            return cls()
        with cls._lock:
            det = cls._all.get(code)
            if det is None:
                det = cls._all[code] = cls()
            return det

    def traced(self):
        """Notes that the current call traced; True when it should warn."""
        with self._lock:
            now = self.calls
            self.trace_calls.append(now)
            # a trace leaves the window once the calls since the trace after it number more than the window
            while len(self.trace_calls) > 1 and now - self.trace_calls[1] + 1 > RETRACE_WARN_WINDOW:
                self.trace_calls.pop(0)
            if len(self.trace_calls) < RETRACE_WARN_AT or self.warned >= RETRACE_WARN_MAX:
                return False
            self.warned += 1
            return True


def _short_key(key):
    names, _, leaves = key
    return "(" + ", ".join("%s=%s" % (n, _leaf_text(v)) for n, v in zip(names, leaves)) + ")" if len(names) == len(
        leaves) else str(leaves)


def _leaf_text(k):
    if k[0] in ("tensor", "var"):
        return "%s%s" % (k[2], list(k[1]) if isinstance(k[1], tuple) else k[1])
    return repr(k[1]) if k[0] == "py" else k[0]


def _changing_argument(history, names):
    if len(history) < 2:
        return None
    counts = collections.Counter()
    for a, b in zip(history, history[1:]):
        for i, (x, y) in enumerate(zip(a[2], b[2])):
            if x != y:
                counts[i] += 1
    if not counts:
        return None
    i = counts.most_common(1)[0][0]
    return names[i] if i < len(names) and len(names) == len(history[-1][2]) else "argument %d" % i


_MISS = object()
_SCALARS = (int, float, bool)


def _fast_key(args):
    """The key of a call with only plain Tensors and Python scalars as positional arguments, else None."""
    key = []
    for a in args:
        t = type(a)
        if t is Tensor:
            d = a._data
            if type(d) is not np.ndarray:
                return None
            key.append((d.shape, d.dtype))
        elif t in _SCALARS:
            key.append(("py", a))
        else:
            return None
    return tuple(key)


def _with_pyconsts(out_refs, outs):
    outs = iter(outs)
    return tuple(_py_output(r[1]) if r[0] == "pyconst" else next(outs) for r in out_refs)


def _py_output(v):
    """A Python value a traced function returned, as TF returns it: numbers as tensors (TF's default dtypes),
    None and other objects as they are (accel has no string tensors)."""
    if isinstance(v, (bool, int, float, np.generic)):
        from accel.ops.core import convert  # noqa: PLC0415

        return convert(v)
    return v


def _returns_none(outs):
    return ()


def _wrap_out(v):
    if isinstance(v, np.ndarray):
        return Tensor(v)
    if isinstance(v, np.generic):
        return Tensor(np.asarray(v))
    return v


def _snapshot(plan):
    saved = []
    for n in plan.writes:
        if n[0] == "assign":
            v = n[1][1] if n[1][0] == "var" else None
            if v is not None:
                saved.append((v, v._data.copy()))
        elif n[0] == "kernel":
            saved += [(v, v._data.copy()) for v, _, _ in n[1].stores]
        else:
            for v in getattr(n[2], "writes_variables", lambda: [])():
                saved.append((v, v._data.copy()))
    return saved


def _restore(saved):
    for v, a in saved:
        np.copyto(v._data, a)


# --- public -----------------------------------------------------------------------------------

def function(func=None, input_signature=None, autograph=True, jit_compile=None, reduce_retracing=False,
             experimental_implements=None, experimental_autograph_options=None, experimental_attributes=None,
             experimental_relax_shapes=None, experimental_compile=None, experimental_follow_type_hints=None,
             name=None):
    """Traces `func` once per signature and replays the recorded plan (see the module docstring)."""
    if experimental_relax_shapes is not None:
        reduce_retracing = reduce_retracing or experimental_relax_shapes
    if jit_compile is None and experimental_compile is not None:
        jit_compile = experimental_compile

    def wrap(f):
        if isinstance(f, Function):
            return f
        return Function(f, input_signature, reduce_retracing, jit_compile, name)

    return wrap if func is None else wrap(func)
