"""Why is my gradient None? Diagnostics that name the cause and the line, plus numeric checks.

Nothing here runs on the normal training path: causes are worked out only when a
gradient is missing, from facts the tape keeps anyway (tensor ids grow monotonically,
so a tensor's id says when it was made relative to the tape's start, stop and pauses).
"""

from __future__ import annotations

import inspect
import linecache
import re
import sys
import threading

from accel import backend
from accel.errors import InvalidArgumentError
from accel.ops.core import convert
from accel.recorder import IN_IDS, OUT_IDS, hooks
from accel.sites import TapeWarning, format_site, user_frame, user_site, warn_once  # noqa: F401  (public here)
from accel.tensor import _next_id
from accel.variables import Variable


class MissingGradientError(ValueError):
    """Raised by `gradient(..., unconnected_gradients="raise")`; `.report` explains each source."""

    def __init__(self, report):
        super().__init__(str(report))
        self.report = report


# --- numerics -------------------------------------------------------------------------------

def enable_check_numerics(stack_height_limit=30, path_length_limit=50):
    """Makes the first op (forward or backward) of this thread that produces NaN or Inf raise, naming the
    op and line (per thread, as accel's tapes: other threads' ops are not checked)."""
    hooks.set_numerics_check(_numerics_hook)


def disable_check_numerics():
    hooks.set_numerics_check(None)


def _numerics_hook(opname, arrays, phase):
    for a in arrays:
        if a is None or not hasattr(a, "dtype") or a.dtype.kind != "f":
            continue
        xp = backend.xp_of(a)
        if not bool(xp.all(xp.isfinite(a))):
            n_nan = int(xp.isnan(a).sum())
            n_inf = int(xp.isinf(a).sum())
            raise InvalidArgumentError(None, opname, "check_numerics: %s of op '%s' produced %d NaN and %d Inf "
                                       "values (shape %s) at %s" % (phase, opname, n_nan, n_inf, tuple(a.shape),
                                                                    format_site(user_site())))


def check_numerics(tensor, message, name=None):
    """Returns `tensor` unchanged, or raises InvalidArgumentError with `message` if it holds NaN or Inf."""
    t = convert(tensor)
    a = t._data
    if a.dtype.kind != "f":
        raise TypeError("check_numerics: expected a float tensor, got %s" % a.dtype)
    xp = backend.xp_of(a)
    if not bool(xp.all(xp.isfinite(a))):
        kinds = []
        if bool(xp.any(xp.isnan(a))):
            kinds.append("NaN")
        if bool(xp.any(xp.isinf(a))):
            kinds.append("Inf")
        raise InvalidArgumentError(None, "check_numerics", "%s : Tensor had %s values" % (message, " and ".join(kinds)))
    return t


# --- explaining missing gradients ----------------------------------------------------------

CONNECTED = "connected"
TAPE_USED = "tape_already_used"
TAPE_RESET = "tape_reset"
INTEGER_SOURCE = "integer_source"
NOT_TRAINABLE = "variable_not_trainable"
NOT_WATCHED_ACCESS_OFF = "watch_accessed_variables_off"
CONSTANT_NOT_WATCHED = "constant_not_watched"
NAME_REBOUND = "name_rebound"
NEW_VARIABLE = "different_variable"
BEFORE_TAPE = "computed_before_tape"
AFTER_TAPE = "computed_after_tape"
IN_STOP_RECORDING = "computed_in_stop_recording"
NON_DIFFERENTIABLE = "non_differentiable_op"
LEFT_TAPE = "value_left_tape"
NOT_DEPENDENT = "target_does_not_depend_on_source"
INTEGER_TARGET = "integer_target"


class SourceReport:
    """Why one source did or did not get a gradient."""

    def __init__(self, name, cause, message, fix=None, site=None):
        self.name = name
        self.cause = cause
        self.message = message
        self.fix = fix
        self.site = site

    @property
    def connected(self):
        return self.cause == CONNECTED

    def __str__(self):
        s = "%s: %s" % (self.name, self.message)
        if self.fix:
            s += "\n    Fix: " + self.fix
        return s

    __repr__ = __str__


class GradientReport(list):
    """One SourceReport per source; prints like an answer."""

    def __str__(self):
        missing = [r for r in self if not r.connected]
        head = ("Every source is connected to the target." if not missing else
                "%d of %d source(s) get no gradient:" % (len(missing), len(self)))
        return "\n".join([head] + ["  - " + str(r).replace("\n", "\n  ") for r in self])


class _Where:
    """The user's frame reduced to what explain() reads later (holding the frame would pin its locals)."""

    __slots__ = ("filename", "first", "line")

    def __init__(self, frame):
        self.filename = frame.f_code.co_filename
        self.first = frame.f_code.co_firstlineno
        self.line = frame.f_lineno


def source_names(objs, frame):
    """The Python names the caller uses for objs (for reports), else a description of each."""
    found = {}
    if frame is not None:
        wanted = {id(o) for o in objs}
        local_vars = frame.f_locals
        try:
            for k, v in list(local_vars.items()) + list(frame.f_globals.items()):
                if id(v) in wanted and not k.startswith("_"):
                    found.setdefault(id(v), k)
        finally:
            # before Python 3.13 f_locals of a function is a snapshot cached on the frame: it would keep
            # every local (a deleted tape, its arrays) alive until the function returns. Emptying it
            # is safe (values are copied back only for keys present); never for module frames, and
            # never from 3.13 on, where f_locals writes through to the real locals.
            if (sys.version_info < (3, 13) and frame.f_code.co_flags & inspect.CO_OPTIMIZED
                    and local_vars is not frame.f_globals):
                local_vars.clear()
    names = []
    for o in objs:
        if id(o) in found:
            names.append(found[id(o)])
        elif isinstance(o, Variable):
            names.append("Variable %r" % o.name)
        else:
            names.append("tensor of shape %s" % (tuple(o.shape),))
    return names


def _rebinding_line(name, where, kind):
    """Finds, in the caller's source, a line that rebinds `name` (x = x + 1, or a new Variable)."""
    if where is None or not name.isidentifier():
        return None
    lines = linecache.getlines(where.filename)
    if kind == "op":
        pat = re.compile(r"^\s*%s\s*(=(?!=)\s*.*\b%s\b|[-+*/]=)" % (re.escape(name), re.escape(name)))
    else:
        pat = re.compile(r"^\s*%s\s*=\s*.*\bVariable\s*\(" % re.escape(name))
    # only the caller's own function (or module) body, up to the current line
    hits = [i + 1 for i in range(where.first - 1, min(where.line, len(lines))) if pat.search(lines[i])]
    if kind == "variable":
        return (where.filename, hits[-1]) if len(hits) >= 2 else None
    return (where.filename, hits[-1]) if hits else None


class _TapeFacts:
    """What explain() reads from a tape, captured at gradient() time (the tape releases or moves on)."""

    _FIELDS = ("_tracked", "_shadow", "_cuts", "_shadow_edges", "_watch_accessed", "_start_id", "_stop_id",
               "_recording", "_pauses", "_exits", "_reset_id", "_enter_site", "_exit_site", "_used_site")

    def __init__(self, tape):
        for f in self._FIELDS:
            setattr(self, f, getattr(tape, f))
        self._pauses = list(tape._pauses)
        self._exits = list(tape._exits)

    def _stop_id_or_now(self):
        return self._stop_id if self._stop_id is not None and not self._recording else _next_id()


class LazyReport:
    """The causes of a gradient() call's missing gradients, worked out only when someone asks
    (an optimizer's error, explain, or unconnected_gradients="raise")."""

    def __init__(self, tape, targets, sources, nodes):
        self._facts = _TapeFacts(tape)
        self._targets = targets
        self._sources = sources
        self._nodes = None if nodes is None else [(None, n[IN_IDS], n[OUT_IDS]) for n in nodes]
        frame = user_frame()
        self._where = None if frame is None else _Where(frame)
        self._names = source_names(sources, frame)
        self._report = None

    def report(self):
        if self._report is None:
            self._report = explain(self._facts, self._targets, self._sources, self._nodes, names=self._names,
                                   where=self._where)
        return self._report


def explain(tape, targets, sources, nodes, names=None, where=None):
    """Classifies each source: connected, or the reason it is not. Used by `GradientTape.explain`."""
    if names is None or where is None:
        frame = user_frame()
        names = names or source_names(sources, frame)
        where = where or (None if frame is None else _Where(frame))
    report = GradientReport()
    if nodes is None:  # a non-persistent tape released its records
        for k in range(len(sources)):
            report.append(SourceReport(
                names[k], TAPE_USED, "this non-persistent tape was already used by a gradient() call at %s, which "
                "released its records" % format_site(tape._used_site),
                "create the tape with GradientTape(persistent=True) to call gradient() more than once, or compute "
                "all gradients in one call: tape.gradient(loss, [a, b])"))
        return report
    forward = {}
    for node in nodes:
        for i in node[IN_IDS]:
            forward.setdefault(i, []).extend(node[OUT_IDS])
    for c in tape._cuts:
        for i in c[1]:
            forward.setdefault(i, []).append(c[2])
    for ins, outs in tape._shadow_edges:
        for i in ins:
            forward.setdefault(i, []).extend(outs)
    cut_by_out = {c[2]: c for c in tape._cuts}
    target_ids = {t._id for t in targets}

    for k, s in enumerate(sources):
        report.append(_explain_one(tape, s, names[k], targets, target_ids, forward, cut_by_out, where, Variable))
    return report


def _reach(start, forward):
    seen = {start}
    stack = [start]
    parents = {}
    while stack:
        i = stack.pop()
        for o in forward.get(i, ()):
            if o not in seen:
                seen.add(o)
                parents[o] = i
                stack.append(o)
    return seen, parents


def _explain_one(tape, s, name, targets, target_ids, forward, cut_by_out, where, Variable):
    is_var = isinstance(s, Variable)
    if s._data.dtype.kind != "f":
        return SourceReport(name, INTEGER_SOURCE, "its dtype is %s; only floating-point tensors have gradients"
                            % s._data.dtype, "cast it first, e.g. accel.cast(x, accel.float32), and watch the cast "
                            "value (or create the Variable with a float value such as 1.0)")
    for t in targets:
        if t._data.dtype.kind != "f":
            return SourceReport(name, INTEGER_TARGET, "the target has dtype %s, which carries no gradient"
                                % t._data.dtype, "compute the loss in floating point")
    tracked = s._id in tape._tracked
    if not tracked:
        if is_var:
            if not s.trainable:
                return SourceReport(name, NOT_TRAINABLE, "Variable %r was created with trainable=False, so the tape "
                                    "does not watch it (created at %s)" % (s.name, format_site(s._site)),
                                    "pass trainable=True, or call tape.watch(%s) inside the `with` block" % name,
                                    s._site)
            if not tape._watch_accessed:
                return SourceReport(name, NOT_WATCHED_ACCESS_OFF, "the tape was created with "
                                    "watch_accessed_variables=False and %s was never passed to tape.watch()" % name,
                                    "call tape.watch(%s) inside the `with` block" % name)
            rebound = _rebinding_line(name, where, "variable")
            if rebound is not None:
                return SourceReport(name, NEW_VARIABLE, "`%s` names a new Variable created at %s; the tape recorded "
                                    "the one it replaced" % (name, format_site(rebound)),
                                    "create the Variable once and update it with %s.assign(...)" % name, rebound)
            if s._id > tape._stop_id_or_now():
                return SourceReport(name, NEW_VARIABLE, "Variable %r was created at %s, after the tape stopped "
                                    "recording" % (s.name, format_site(s._site)),
                                    "compute the target from this Variable inside the `with` block", s._site)
            return _not_used(tape, s, name, targets)
        rebound = _rebinding_line(name, where, "op")
        if rebound is not None:
            return SourceReport(name, NAME_REBOUND, "`%s` is a plain tensor: the line at %s rebound the name to the "
                                "result of an operation (a new, unwatched tensor), replacing what it held before"
                                % (name, format_site(rebound)),
                                "keep the Variable and update it in place: %s.assign_add(...) / %s.assign(...)"
                                % (name, name), rebound)
        return SourceReport(name, CONSTANT_NOT_WATCHED, "it is a constant tensor, and the tape only tracks "
                            "trainable Variables and tensors passed to tape.watch()",
                            "call tape.watch(%s) inside the `with` block before using it, or make it an "
                            "accel.Variable" % name)
    # the source is on the tape: does the target depend on it?
    reach, parents = _reach(s._id, forward)
    for t in targets:
        if t._id in reach:
            path = [t._id]
            while path[-1] in parents:
                path.append(parents[path[-1]])
            cuts = [cut_by_out[i] for i in path if i in cut_by_out]
            if cuts:
                c = cuts[-1]
                return SourceReport(name, NON_DIFFERENTIABLE, "the path from %s to the target goes through `%s`, "
                                    "which has no gradient%s" % (name, c[0], " (at %s)" % format_site(c[3])
                                                                 if c[3] else ""),
                                    _cut_fix(c[0]), c[3])
            return SourceReport(name, CONNECTED, "connected")
    return _not_used(tape, s, name, targets)


def _cut_fix(opname):
    if opname == "stop_gradient":
        return "remove accel.stop_gradient from the path if the gradient should flow"
    if opname in ("argmax", "argmin", "equal", "not_equal", "less", "greater", "less_equal", "greater_equal"):
        return ("%s gives integers or booleans, which are not differentiable; use a smooth surrogate (softmax "
                "probabilities instead of argmax, sigmoid of a difference instead of a comparison)" % opname)
    if opname.startswith("cast"):
        return "cast to a floating dtype only, or keep the float value on the differentiable path"
    return "%s is piecewise constant (zero gradient almost everywhere); use a differentiable expression" % opname


def _not_used(tape, s, name, targets):
    """The source is fine, but the target was not computed from it while the tape recorded."""
    for t in targets:
        tid = t._id
        if tid in tape._tracked or tid in tape._shadow:
            continue  # this target was recorded: the source just is not part of it
        if tid < tape._start_id:
            return SourceReport(name, BEFORE_TAPE, "the target was computed before the tape started recording (the "
                                "tape started at %s), so there is no recorded path" % format_site(tape._enter_site),
                                "move the computation of the target inside the `with accel.GradientTape()` block",
                                tape._enter_site)
        if tape._stop_id is not None and tid > tape._stop_id and not tape._recording:
            return SourceReport(name, AFTER_TAPE, "the target was computed after the tape stopped recording (the "
                                "`with` block ended at %s)" % format_site(tape._exit_site),
                                "compute the target inside the `with` block", tape._exit_site)
        for (a, b, site) in tape._pauses:
            if a <= tid and (b is None or tid <= b):
                return SourceReport(name, IN_STOP_RECORDING, "the target was computed inside tape.stop_recording() "
                                    "(at %s)" % format_site(site), "compute it outside stop_recording()", site)
        for (_, what, site) in tape._exits:
            return SourceReport(name, LEFT_TAPE, "a value on the path left the tape through %s at %s; what came "
                                "back is a new constant with no recorded history" % (what, format_site(site)),
                                "stay with accel ops on the differentiable path (no .numpy(), float() or NumPy "
                                "functions between the source and the loss)", site)
        if tape._reset_id is not None and tid < tape._reset_id:
            return SourceReport(name, TAPE_RESET, "the tape was reset() after the target was computed",
                                "compute the target after reset()")
        if s._id not in tape._tracked:
            return SourceReport(name, BEFORE_TAPE, "the target was computed while the tape recorded, but only from "
                                "values it does not track: the part that uses %s ran before the tape started (at "
                                "%s) or outside it" % (name, format_site(tape._enter_site)),
                                "move every step from %s to the target inside the `with accel.GradientTape()` "
                                "block" % name, tape._enter_site)
    return SourceReport(name, NOT_DEPENDENT, "the target does not depend on %s: no recorded operation on the path "
                        "from %s to the target (an unused layer or variable, or a different variable was used)"
                        % (name, name), "check that %s is actually used to compute the target" % name)



# --- causes of the last missing gradients, for optimizers --------------------------------

_last = threading.local()


def remember_missing(sources, grads, lazy):
    """Keeps this thread's latest missing gradients (source id -> (LazyReport, position)); ids never repeat."""
    _last.table = {s._id: (lazy, k) for k, (s, g) in enumerate(zip(sources, grads)) if g is None}


def missing_gradient_cause(source):
    """The SourceReport of `source` from the latest gradient() call in this thread that left it None."""
    table = getattr(_last, "table", None)
    entry = None if table is None else table.get(source._id)
    return None if entry is None else entry[0].report()[entry[1]]
