"""Module: TensorFlow's tf.Module. Variables and submodules held in attributes (also inside lists, tuples,
namedtuples and dicts) are found by walking the attributes when asked, in tf.Module's order.

Also `name_scope`, the context manager Module needs (TF's tf.name_scope in eager mode: scopes nest, a name
ending in "/" is absolute, names are not made unique).
"""

from __future__ import annotations

import functools
import re
import threading

from accel._readonly import read_only
from accel.variables import Variable

__all__ = ["Module", "name_scope", "current_name_scope"]


class _ScopeStack(threading.local):
    def __init__(self):
        self.scopes = [""]  # full scope names, each "" or ending in "/"


_stack = _ScopeStack()


def current_name_scope():
    """The full name scope in effect ("" at top level, else "outer/inner/")."""
    return _stack.scopes[-1]


class name_scope:  # noqa: N801  (TensorFlow's name)
    """`with name_scope("block") as scope:` -> scope == "<enclosing>block/". A name ending in "/" is taken
    as the full scope, as in TensorFlow.

    >>> with name_scope("outer"):
    ...     with name_scope("inner") as s:
    ...         s
    'outer/inner/'
    """

    def __init__(self, name):
        if not isinstance(name, str):
            raise TypeError("name_scope: name must be a string, got %s %r" % (type(name).__name__, name))
        self._name = name

    name = read_only("_name")

    def __enter__(self):
        if not self._name:
            full = ""
        elif self._name.endswith("/"):
            full = self._name
        else:
            full = current_name_scope() + self._name + "/"
        _stack.scopes.append(full)
        return full

    def __exit__(self, *exc):
        _stack.scopes.pop()
        return False

    def __repr__(self):
        return "<accel.name_scope %r>" % self._name


def _camel_to_snake(name):
    name = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


_VALID_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _is_namedtuple(x):
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _flatten_value(value, path=()):
    """(path, leaf) pairs of a nested structure as tf.nest sees it: dicts by sorted key, lists and tuples in
    order, namedtuples by field; anything else is a leaf."""
    if isinstance(value, dict):
        for k in sorted(value):
            yield from _flatten_value(value[k], path + (k,))
    elif _is_namedtuple(value):
        for field, v in zip(value._fields, value):
            yield from _flatten_value(v, path + (field,))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _flatten_value(v, path + (i,))
    else:
        yield path, value


class Module:
    """A named container of Variables and other Modules (tf.Module).

    >>> class Dense(Module):
    ...     def __init__(self, n_in, n_out, name=None):
    ...         super().__init__(name=name)
    ...         self.w = accel.Variable(accel.random.normal([n_in, n_out]), name="w")
    ...         self.b = accel.Variable(accel.zeros([n_out]), name="b")
    ...     @Module.with_name_scope
    ...     def __call__(self, x):
    ...         return accel.matmul(x, self.w) + self.b
    >>> [v.name for v in Dense(3, 2).variables]   # attributes in name order
    ['b:0', 'w:0']
    """

    # attributes that hold bookkeeping, never state (a subclass may extend this set)
    _TF_MODULE_IGNORED_PROPERTIES = frozenset()

    def __init__(self, name=None):
        if name is None:
            name = _camel_to_snake(type(self).__name__)
        elif not isinstance(name, str) or not _VALID_NAME.match(name):
            raise ValueError(
                "%r is not a valid module name. Module names must be valid Python identifiers (e.g. a valid "
                "class name)." % (name,)
            )
        self._name = name
        with name_scope(name) as scope:
            self._name_scope = name_scope(scope)

    name = read_only("_name", "The name given to the constructor, or the class name in snake case.")
    name_scope = read_only("_name_scope", 'A name_scope for the module\'s full scope ("outer/module/"), for `with`.')

    @property
    def variables(self):
        """Every Variable of this module and its submodules, each once, in tf.Module's order."""
        return tuple(self._flatten(predicate=_is_variable))

    @property
    def trainable_variables(self):
        return tuple(self._flatten(predicate=_is_trainable))

    @property
    def non_trainable_variables(self):
        return tuple(self._flatten(predicate=_is_non_trainable))

    @property
    def submodules(self):
        """Every Module nested in this one, each once: a module's own attributes' modules first, then
        (recursively) theirs."""
        return tuple(self._flatten(predicate=_is_module))

    def _module_leaves(self):
        """(path, leaf) for this module's own attribute values, attributes in name order (tf.Module's)."""
        d = vars(self)
        for key in sorted(d):
            if key in self._TF_MODULE_IGNORED_PROPERTIES or key == "_name_scope":
                continue
            try:
                leaves = list(_flatten_value(d[key]))
            except TypeError as e:  # a dict whose keys do not sort
                raise ValueError("Error processing property %r of %r: %s" % (key, self, e)) from e
            for path, leaf in leaves:
                yield (key,) + path, leaf

    def _flatten(self, recursive=True, predicate=None, with_path=False):
        """Leaves of this module and (when recursive) its submodules that satisfy `predicate`, as tf.Module."""
        predicate = predicate or (lambda _: True)
        return _flatten_module(self, recursive, predicate, with_path, (), {id(self)}, [])

    @classmethod
    def with_name_scope(cls, method):
        """Decorator: runs `method` inside the module's name scope.

        >>> class M(Module):
        ...     @Module.with_name_scope
        ...     def __call__(self, x): ...
        """

        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            with self.name_scope:
                return method(self, *args, **kwargs)

        return wrapper

    def __repr__(self):
        return "<%s.%s name=%s>" % (type(self).__module__, type(self).__name__, self.name)


def _is_variable(x):
    return isinstance(x, Variable)


def _is_trainable(x):
    return isinstance(x, Variable) and x.trainable


def _is_non_trainable(x):
    return isinstance(x, Variable) and not x.trainable


def _is_module(x):
    return isinstance(x, Module)


def _flatten_module(module, recursive, predicate, with_path, module_path, seen, stack):
    # tf.Module's walk: this module's leaves first, then each new submodule's, depth first; a module already
    # on the recursion stack is listed but not entered again
    if id(module) in stack:
        recursive = False
    submodules = []
    for path, leaf in module._module_leaves():
        path = module_path + path
        if not with_path:
            if id(leaf) in seen:
                continue
            seen.add(id(leaf))
        if predicate(leaf):
            yield (path, leaf) if with_path else leaf
        if recursive and isinstance(leaf, Module):
            submodules.append((path, leaf))
    stack.append(id(module))
    for path, sub in submodules:
        yield from _flatten_module(sub, recursive, predicate, with_path, path, seen, stack)
    stack.pop()


# Callables run with the owner after a Layer (add_weight) or an optimizer (build) creates Variables;
# accel.train registers one that assigns values a restore kept for variables that did not exist yet.
creation_hooks = []


def variables_created(owner):
    for hook in tuple(creation_hooks):
        hook(owner)
