"""GradientTape: records ops while active and differentiates them in reverse (TensorFlow semantics).

Entries are kept in execution order, so walking them backwards is already a topological
order: no recursion, linear in the number of recorded ops. Tapes are thread-local.
"""

from __future__ import annotations

import enum

import numpy as np

from accel import backend, debugging, profiler, tensor as _tensor_mod
from accel.indexed_slices import IndexedSlices
from accel.ops import api, core, fusion
from accel.ops.shape import RowGrad
from accel.ops.tensor_ns import TENSOR_NS
from accel.recorder import (  # noqa: F401  (IN_IDS...: a recorded node's fields, read here and by explain)
    ATTRS, IN_IDS, IN_SHAPES, OP, OUT, OUT_IDS, SAVED, hooks, note_cut, note_exit, record, state as _state)
from accel.tensor import Tensor
from accel.variables import Variable

_now = _tensor_mod._next_id  # tensor ids grow monotonically: an id is also a timestamp


final_hook = None  # see set_final_hook


def set_final_hook(hook):
    """Installs hook(sources) -> an on_final callback for an eager backward pass (see GradientTape._on_final)
    or None; accel.distribute's starts the all-reduce of a replica's gradients during the pass."""
    global final_hook
    final_hook = hook


class UnconnectedGradients(enum.Enum):
    NONE = "none"
    ZERO = "zero"


def _is_variable(x):
    return isinstance(x, Variable)


class GradientTape:
    """Records operations for automatic differentiation.

    >>> x = accel.constant(3.0)
    >>> with accel.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = x * x
    >>> float(tape.gradient(y, x))
    6.0
    """

    def __init__(self, persistent=False, watch_accessed_variables=True):
        self._persistent = bool(persistent)
        self._watch_accessed = bool(watch_accessed_variables)
        self._nodes = []
        self._tracked = set()
        self._watched = {}  # id -> Tensor/Variable watched explicitly or accessed
        self._recording = False
        self._used = False
        # facts kept for explain(): when recording started/stopped/paused, ops that cut a path,
        # values that left the tape
        self._start_id = None
        self._stop_id = None
        self._enter_site = None
        self._exit_site = None
        self._used_site = None
        self._reset_id = None
        self._pauses = []
        self._cuts = []
        self._exits = []
        self._shadow = set()
        self._shadow_edges = []
        # on_final(i, gradient): called during the backward pass as soon as source i's gradient is final (no
        # op left to visit adds to it); accel.distribute starts all-reducing it while the pass goes on
        self._on_final = None

    # --- context ------------------------------------------------------------------------
    def __enter__(self):
        if self._recording:
            raise RuntimeError("GradientTape: this tape is already recording (nested `with` on one tape)")
        self._recording = True
        self._start_id = _now()
        self._stop_id = None
        self._enter_site = debugging.user_site()
        _state.tapes.append(self)
        return self

    def __exit__(self, *exc):
        self._recording = False
        self._stop_id = _now()
        self._exit_site = debugging.user_site()
        tapes = _state.tapes
        for i in range(len(tapes) - 1, -1, -1):
            if tapes[i] is self:
                del tapes[i]
                break
        return False

    def _watch_variable(self, v):
        self._tracked.add(v._id)
        self._watched[v._id] = v

    def watch(self, tensor):
        """Tracks `tensor` (a Tensor, Variable or nested structure of them) so gradients reach it."""
        for t in _flatten(tensor):
            if not isinstance(t, Tensor):
                raise TypeError(
                    "GradientTape.watch: expected a Tensor or Variable, got %s (%r); convert it with "
                    "accel.constant first" % (type(t).__name__, t))
            if t._data.dtype.kind != "f":
                debugging.warn_once(
                    "The dtype of the watched tensor must be floating (e.g. accel.float32), got %s; "
                    "its gradient will be None" % t._data.dtype)
            self._tracked.add(t._id)
            self._watched[t._id] = t

    def watched_variables(self):
        return tuple(v for v in self._watched.values() if _is_variable(v))

    def stop_recording(self):
        """Context manager: ops inside are not recorded on this tape."""
        return _StopRecording(self)

    def reset(self):
        """Clears everything recorded so far; the tape stays active."""
        self._nodes = []
        self._tracked = set()
        self._watched = {}
        self._cuts = []
        self._exits = []
        self._shadow = set()
        self._shadow_edges = []
        self._used = False
        self._reset_id = _now()

    def _stop_id_or_now(self):
        return self._stop_id if self._stop_id is not None and not self._recording else _now()

    def explain(self, target, sources):
        """Why each source does or does not get a gradient: a report that names the cause and the line.

        >>> print(tape.explain(loss, [w, b]))
        """
        flat_sources = _flatten(sources)
        flat_targets = [core.convert(t) for t in _flatten(target)]
        return debugging.explain(self, flat_targets, flat_sources, self._nodes)

    # --- differentiation ------------------------------------------------------------------
    def gradient(self, target, sources, output_gradients=None,
                 unconnected_gradients=UnconnectedGradients.NONE):
        """d(sum of target)/d(source) for each source, in the sources' structure.

        Sources not connected to the target get None (or zeros with unconnected_gradients="zero").
        """
        self._check_not_used()
        unconnected = _unconnected_mode(unconnected_gradients)
        if self._recording and not self._persistent:
            debugging.warn_once(
                "gradient() of a non-persistent tape called inside its own `with` block: the tape is "
                "released by this call, so nothing recorded after it can be differentiated; call gradient() "
                "after the block, or use GradientTape(persistent=True)")
        flat_targets = _flatten(target)
        flat_sources = _flatten(sources)
        _check_sources(flat_sources, "gradient")
        if output_gradients is not None:
            flat_og = _flatten(output_gradients)
            if len(flat_og) != len(flat_targets):
                raise ValueError("GradientTape.gradient: output_gradients has %d entries for %d targets"
                                 % (len(flat_og), len(flat_targets)))
            for k, (og, t) in enumerate(zip(flat_og, flat_targets)):
                if og is None:
                    continue
                og, t = core.convert(og), core.convert(t)
                if tuple(og._data.shape) != tuple(t._data.shape) or og._data.dtype != t._data.dtype:
                    raise ValueError("GradientTape.gradient: output_gradients[%d] has shape %s and dtype %s; "
                                     "expected the target's shape %s and dtype %s"
                                     % (k, tuple(og._data.shape), og._data.dtype, tuple(t._data.shape),
                                        t._data.dtype))
        else:
            flat_og = None
        if not self._persistent:
            self._used = True
            self._used_site = debugging.user_site()
        nodes = self._nodes
        grads = self._gradient(flat_targets, flat_sources, flat_og, free=False)
        if any(g is None for g in grads):
            grads = _targets_that_are_sources(flat_targets, flat_sources, flat_og, grads)
        if any(g is None for g in grads):
            # keep what explaining needs; the causes are worked out only if someone asks for them
            lazy = debugging.LazyReport(self, [core.convert(t) for t in flat_targets], flat_sources, nodes)
            debugging.remember_missing(flat_sources, grads, lazy)
            if unconnected == "raise":
                if not self._persistent:
                    self._release()
                raise debugging.MissingGradientError(lazy.report())
        if not self._persistent:
            self._release()
        if unconnected is UnconnectedGradients.ZERO:
            grads = [g if g is not None else _zeros_like(s) for g, s in zip(grads, flat_sources)]
        return _pack_like(sources, grads)

    def _check_not_used(self):
        if self._used and not self._persistent:
            raise RuntimeError(
                "A non-persistent GradientTape can only be used to compute one set of gradients (or "
                "jacobians); the first call was at %s. Create it with GradientTape(persistent=True) to call "
                "gradient() again" % debugging.format_site(self._used_site))

    def _release(self):
        """Drops the records (and the arrays they hold) of a used non-persistent tape."""
        self._nodes = None
        self._cuts = []
        self._shadow_edges = []

    def _gradient(self, flat_targets, flat_sources, flat_og, free):
        nodes = self._nodes
        was_recording = self._recording
        self._recording = False  # the backward pass is never recorded on the tape itself
        try:
            return _backward(self, nodes, flat_targets, flat_sources, flat_og)
        finally:
            self._recording = was_recording

    def jacobian(self, target, sources, unconnected_gradients=UnconnectedGradients.NONE,
                 parallel_iterations=None, experimental_use_pfor=True):
        """Full Jacobian: result[i] has shape target.shape + source_i.shape."""
        self._check_not_used()
        unconnected = _unconnected_mode(unconnected_gradients)
        target = core.convert(target)
        flat_sources = _flatten(sources)
        _check_sources(flat_sources, "jacobian")
        nodes = self._nodes
        n = int(np.prod(target._data.shape))
        xp = backend.xp_of(target._data)
        rows = [[] for _ in flat_sources]
        for k in range(n):
            seed = xp.zeros(n, target._data.dtype)
            seed[k] = 1
            og = Tensor(seed.reshape(target._data.shape))
            self._nodes = nodes
            gs = self._gradient([target], flat_sources, [og], free=False)
            for j, g in enumerate(gs):
                rows[j].append(g)
        if not self._persistent:
            self._used = True
            self._nodes = None
        out = []
        for s, r in zip(flat_sources, rows):
            if all(g is None for g in r):
                out.append(None if unconnected is UnconnectedGradients.NONE else
                           api.zeros(tuple(target._data.shape) + tuple(s._data.shape), s.dtype))
                continue
            r = [g if g is not None else _zeros_like(s) for g in r]
            stacked = api.stack(r, axis=0) if r else api.zeros((0,) + tuple(s._data.shape), s.dtype)
            out.append(api.reshape(stacked, tuple(target._data.shape) + tuple(s._data.shape)))
        return _pack_like(sources, out)

    def batch_jacobian(self, target, source, unconnected_gradients=UnconnectedGradients.NONE,
                       parallel_iterations=None, experimental_use_pfor=True):
        """Per-example Jacobian: result[b] = d target[b] / d source[b]; shape [B] + y[1:] + x[1:]."""
        self._check_not_used()
        unconnected = _unconnected_mode(unconnected_gradients)
        target = core.convert(target)
        if target._data.ndim < 1 or source._data.ndim < 1 or target._data.shape[0] != source._data.shape[0]:
            raise ValueError("batch_jacobian: target and source need the same first (batch) dimension, got "
                             "%s and %s" % (tuple(target._data.shape), tuple(source._data.shape)))
        b = target._data.shape[0]
        inner = tuple(target._data.shape[1:])
        m = int(np.prod(inner))
        nodes = self._nodes
        xp = backend.xp_of(target._data)
        cols = []
        for k in range(m):
            seed = xp.zeros((b, m), target._data.dtype)
            seed[:, k] = 1
            self._nodes = nodes
            (g,) = self._gradient([target], [source], [Tensor(seed.reshape(target._data.shape))], free=False)
            cols.append(g)
        if not self._persistent:
            self._used = True
            self._nodes = None
        if all(g is None for g in cols):
            if unconnected is UnconnectedGradients.NONE:
                return None
            return api.zeros((b,) + inner + tuple(source._data.shape[1:]), source.dtype)
        cols = [g if g is not None else _zeros_like(source) for g in cols]
        stacked = api.stack(cols, axis=1)  # [B, m] + x[1:]
        return api.reshape(stacked, (b,) + inner + tuple(source._data.shape[1:]))


class _StopRecording:
    def __init__(self, tape):
        self._tape = tape

    def __enter__(self):
        self._was = self._tape._recording
        self._tape._recording = False
        self._pause = [_now(), None, debugging.user_site()]
        self._tape._pauses.append(self._pause)

    def __exit__(self, *exc):
        self._tape._recording = self._was
        self._pause[1] = _now()
        return False


def _check_sources(flat_sources, what):
    for s in flat_sources:
        if not isinstance(s, Tensor):
            raise TypeError("GradientTape.%s: sources must be Tensors or Variables, got %s (%r); a NumPy array "
                            "has no recorded history: convert it with accel.constant and watch it inside the tape"
                            % (what, type(s).__name__, s))


def _unconnected_mode(value):
    if isinstance(value, UnconnectedGradients):
        return value
    if isinstance(value, str) and value.lower() in ("none", "zero", "raise"):
        return "raise" if value.lower() == "raise" else UnconnectedGradients(value.lower())
    raise ValueError("unconnected_gradients: expected UnconnectedGradients.NONE/ZERO or 'none'/'zero'/'raise', "
                     "got %r" % (value,))


def _zeros_like(s):
    return api.zeros_like(s)


def _recording_outside(tape):
    for t in _state.tapes:
        if t is not tape and t._recording:
            return True
    return False


def _targets_that_are_sources(flat_targets, flat_sources, flat_og, grads):
    """As TF: a source that is itself a target gets that target's seed (ones, or its output_gradients)
    even where the tape never watched it (`tape.gradient(v, v)` is 1, of v's dtype)."""
    grads = list(grads)
    for i, (s, g) in enumerate(zip(flat_sources, grads)):
        if g is not None:
            continue
        for k, t in enumerate(flat_targets):
            if t is not s:
                continue
            if flat_og is not None and flat_og[k] is not None:
                seed = core.convert(flat_og[k])
            else:
                seed = core.apply(core.REGISTRY["ones_like"], [s])
            g = seed if g is None else g + seed
        grads[i] = g
    return grads


def _backward(tape, nodes, flat_targets, flat_sources, flat_og):
    """Reverse accumulation over the recorded nodes; returns one gradient (or None) per source.

    Inside accel.function the pass is recorded too: each rule (or fused hook) call on arrays becomes one
    step of the plan, so a replay computes exactly what eager does. A pass that meets a cotangent that
    is not an array (row gradients) is recorded again with its rules on Tensors, through the ops."""
    trace = _state.trace
    if trace is not None and not trace.paused and not _recording_outside(tape):
        mark = len(trace.nodes)
        try:
            return _backward_pass(tape, nodes, flat_targets, flat_sources, flat_og, False, trace)
        except trace.NotCapturable:
            del trace.nodes[mark:]
            return _backward_pass(tape, nodes, flat_targets, flat_sources, flat_og, True, None)
    return _backward_pass(tape, nodes, flat_targets, flat_sources, flat_og, _recording_outside(tape), None)


def _backward_pass(tape, nodes, flat_targets, flat_sources, flat_og, tensor_mode, trace):
    tracked = tape._tracked
    src_ids = {}
    for i, s in enumerate(flat_sources):
        if s._id in tracked and s._data.dtype.kind == "f":
            src_ids.setdefault(s._id, i)
    if not src_ids:
        return [None] * len(flat_sources)

    # which recorded values depend on a source: every recorded op depends on some watched root, so
    # when the sources include every root (the usual training step) that is everything tracked
    if all(i in src_ids for i in tape._watched):
        reach = tracked
        active = nodes[:]
    else:
        reach = set(src_ids)
        active = []
        for node in nodes:
            for i in node[IN_IDS]:
                if i in reach:
                    active.append(node)
                    reach.update(node[OUT_IDS])
                    break

    cot = {}
    xp = None
    for k, t in enumerate(flat_targets):
        t = core.convert(t)
        if t._id not in reach or t._data.dtype.kind != "f":
            continue
        xp = backend.xp_of(t._data)
        if flat_og is not None and flat_og[k] is not None:
            g = core.convert(flat_og[k])
            g = g if tensor_mode else g._data
        elif tensor_mode:
            g = core.apply(core.REGISTRY["ones_like"], [t])
        else:
            g = xp.ones(t._data.shape, t._data.dtype)
        cot[t._id] = cot[t._id] + g if t._id in cot else g
    if not cot:
        return [None] * len(flat_sources)

    if tensor_mode:
        F = TENSOR_NS
    else:
        F = core.array_ns(core._NUMPY if xp is np else xp)
    del nodes
    empty = {}
    pop = active.pop
    profile = hooks.profile
    check = hooks.numerics_check
    array_mode = not tensor_mode
    mode = backend.fused_mode()
    fuse_min = None if mode == "never" else 0 if mode == "always" else fusion.CPU_MIN_SIZE
    # ids of cotangent arrays this pass allocated by summing and has handed to nothing else: later sums
    # may go into them in place. Handing one to a rule (which may return it or a view of it) ends that.
    owned = set()
    on_final = tape._on_final
    if on_final is None and final_hook is not None and array_mode and trace is None:
        on_final = final_hook(flat_sources)  # accel.distribute, inside a replica: start all-reducing early
    finals = {}
    early = on_final is not None and array_mode and trace is None  # report each source as it becomes final
    if early:
        pop, fire_rest = _notifier(active, src_ids, flat_sources, cot, finals, on_final, profile)
    while active:
        op, in_ids, out_ids, saved, out, attrs, in_shapes = pop()
        if len(out_ids) == 1 and not op.multi_out:  # a one-piece split still gets a list
            oid = out_ids[0]
            g = cot.get(oid) if oid in src_ids else cot.pop(oid, None)
            if g is None:
                continue
            if owned:
                owned.discard(id(g))
            if type(g) is RowGrad:
                if trace is not None:
                    raise trace.NotCapturable("row gradient")
                g = g.dense()
        else:
            g = [cot.get(o) if o in src_ids else cot.pop(o, None) for o in out_ids]
            if all(x is None for x in g):
                continue
            for x in g:
                owned.discard(id(x))
            if tensor_mode:
                g = [x if x is not None else _zeros_like(o) for x, o in zip(g, out)]
            else:
                g = [x if x is not None else xp.zeros(o._data.shape, o._data.dtype) for x, o in zip(g, out)]
        if array_mode:
            if saved is None:
                vals = (None,) * len(in_ids)
            elif len(saved) == 1:
                vals = (saved[0]._data,)
            else:
                vals = [t._data for t in saved]
            if out is not None:
                out = tuple([o._data for o in out]) if op.multi_out else out._data
        else:
            vals = saved if saved is not None else (None,) * len(in_ids)
        if attrs is None:
            attrs = empty
        fused = None
        if array_mode:
            if profile is not None:
                profile.label = op.name + " (backward)"
            # the fused path serves only a backward pass that nothing records (see accel/ops/fusion.py);
            # small host arrays skip even the call
            if op.fused is not None and fuse_min is not None and (
                    type(g) is not np.ndarray or g.size >= fuse_min or op.fused_small):
                fused = op.fused(xp, g, out, *vals, **attrs)
                if trace is not None and fused is not None:
                    trace.array_call(op.fused, (xp, g, out, *vals), attrs, fused, op, in_ids,
                                     grad_of=tuple(zip(in_ids, in_shapes)))
            if profile is not None and fused is None:
                g, vals, out = _counted_views(g, vals, out)
        k = -1
        for iid, rule, shape in zip(in_ids, op.rules, in_shapes):
            k += 1
            if rule is None or iid not in reach:
                continue
            gi = None if fused is None else fused[k]
            if gi is None:  # no hook, or the hook left this input to its rule
                gi = rule(F, g, out, *vals, **attrs) if attrs else rule(F, g, out, *vals)
                if trace is not None and gi is not None:
                    trace.array_call(rule, (F, g, out, *vals), attrs, gi, op, in_ids, grad_of=((iid, shape),))
            if gi is None:
                continue
            if check is not None:
                check(op.name, [gi._data if tensor_mode else getattr(gi, "values", gi)], "the gradient")
            if array_mode:
                if gi.shape != shape:
                    g_full, gi = gi, sum_to_array(gi, shape)
                    if trace is not None:
                        trace.array_call(sum_to_array, (g_full, shape), empty, gi, shape_of=(1, iid))
            elif tuple(gi._data.shape) != tuple(shape):
                gi = F.sum_to(gi, shape)
            prev = cot.get(iid)
            if prev is None:
                cot[iid] = gi
            elif array_mode and trace is None and id(prev) in owned and fusion.accumulate(prev, gi, fuse_min):
                pass  # summed in place
            else:
                acc = cot[iid] = prev + gi
                if trace is not None:
                    trace.array_call(_plus, (prev, gi), empty, acc)
                if array_mode and type(acc) is not RowGrad:
                    owned.add(id(acc))
    if profile is not None:
        profile.label = "other"
    if early:
        fire_rest()
    result = []
    for s in flat_sources:
        if s._id in finals:
            result.append(finals[s._id])
        elif s._id in src_ids:
            result.append(_final_value(cot.get(s._id), tensor_mode, profile, trace))
        else:
            result.append(None)
    if on_final is not None and not early:
        for i, g in enumerate(result):  # recorded or traced passes: the values exist only now
            if g is not None:
                on_final(i, g)
    return result


def _final_value(g, tensor_mode, profile, trace):
    """A source's accumulated cotangent as the gradient handed back (Tensor or IndexedSlices)."""
    if type(g) is RowGrad:
        if trace is not None:
            raise trace.NotCapturable("row gradient")
        return IndexedSlices(Tensor(g.values), Tensor(g.indices), np.asarray(g.shape, np.int64))
    if g is not None and not tensor_mode:
        a = core.as_array(g if profile is None else profiler.plain(g))
        if trace is not None and a is not g:  # a NumPy scalar made a 0-d array
            trace.array_call(core.as_array, (g,), {}, a)
        return Tensor(a)
    return g


def _notifier(active, src_ids, flat_sources, cot, finals, on_final, profile):
    """(pop, fire_rest) for a pass with an on_final callback: pop() first reports the sources whose last
    contributing node (the earliest recorded node that reads them) was just visited; fire_rest() reports
    the remaining ones after the pass."""
    first = {}
    for j, node in enumerate(active):
        for iid in node[IN_IDS]:
            if iid in src_ids and iid not in first:
                first[iid] = j
    order = sorted(first, key=first.get, reverse=True)
    where = {}
    for i, s in enumerate(flat_sources):
        if s._id in src_ids:
            where.setdefault(s._id, []).append(i)
    raw_pop = active.pop
    k = 0

    def fire(sid):
        g = cot.get(sid)
        if g is None:
            return
        g = finals[sid] = _final_value(g, False, profile, None)
        for i in where[sid]:
            on_final(i, g)

    def pop():
        nonlocal k
        n = len(active)
        while k < len(order) and first[order[k]] >= n:
            fire(order[k])
            k += 1
        return raw_pop()

    def fire_rest():
        for sid in order[k:]:
            fire(sid)
        for sid in where:
            if sid not in first:
                fire(sid)

    return pop, fire_rest


def _plus(a, b):
    return a + b


def _counted_views(g, vals, out):
    c = profiler.counted
    g = [c(x) for x in g] if isinstance(g, list) else c(g)
    vals = [c(v) for v in vals]
    out = tuple(c(o) for o in out) if isinstance(out, tuple) else c(out)
    return g, vals, out


def sum_to_array(g, shape):
    """Sums a broadcast cotangent back down to `shape` (the one place unbroadcasting happens)."""
    shape = tuple(shape)
    if g.ndim == 0 and shape == ():
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


# --- structures -----------------------------------------------------------------------------

def _flatten(x):
    if isinstance(x, Tensor) or x is None:
        return [x]
    if isinstance(x, dict):
        out = []
        for k in sorted(x, key=_sort_key):
            out.extend(_flatten(x[k]))
        return out
    if isinstance(x, (list, tuple)):
        out = []
        for v in x:
            out.extend(_flatten(v))
        return out
    return [x]


def _sort_key(k):
    return (str(type(k)), k) if not isinstance(k, str) else ("", k)


def _pack_like(structure, flat):
    it = iter(flat)
    return _pack(structure, it)


def _pack(s, it):
    if isinstance(s, Tensor) or s is None:
        return next(it)
    if isinstance(s, dict):
        vals = {k: _pack(s[k], it) for k in sorted(s, key=_sort_key)}
        return type(s)((k, vals[k]) for k in s) if type(s) is not dict else {k: vals[k] for k in s}
    if isinstance(s, tuple) and hasattr(s, "_fields"):
        return type(s)(*[_pack(v, it) for v in s])
    if isinstance(s, (list, tuple)):
        return type(s)(_pack(v, it) for v in s)
    return next(it)
