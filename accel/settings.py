"""The environment, read once, and the runtime settings: the fused-kernel mode and op determinism.

Every environment variable accel reads is read here, once, when accel is imported (`ENV`); the README's
"Environment variables" table lists them (`VARIABLES`). Changing os.environ afterwards changes nothing.
This module sits below accel.backend (which asks it for the settings) and accel.config (the public
tf.config-style namespace, which re-exports them beside the device queries that need backend), so that
neither of those two has to import the other both ways.

Scope of the settings:
- fused mode (`set_fused_mode`, `with fused(...)`) is per thread, like a tape or a device scope: it
  lives in a contextvars.ContextVar, so a thread or asyncio task that changes it leaves every other
  one alone. A new thread starts from the process default, ACCEL_FUSED (on Python builds whose
  threads inherit the parent's context, such as 3.14's free-threaded one, from its parent's mode).
  TensorFlow has no such switch; the per-thread rule is accel's, so that one thread can benchmark or
  debug with "never" while another trains.
- op determinism is process-wide, as in TensorFlow (tf.config.experimental.enable_op_determinism
  called in any thread is seen by all threads, and TF_DETERMINISTIC_OPS=1 turns it on at start;
  here ACCEL_DETERMINISTIC_OPS=1): it is a property of the program's results, not of one thread's.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections import namedtuple
from types import SimpleNamespace

# --- the environment, read once -----------------------------------------------------------

FUSED_MODES = ("auto", "always", "never")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

Environment = namedtuple("Environment", ["device", "fused", "deterministic_ops", "numba", "numba_parallel",
                                         "cuda_graphs"])

# name -> (Environment field, default as written in the environment); the README table lists these
VARIABLES = {
    "ACCEL_DEVICE": ("device", ""),
    "ACCEL_FUSED": ("fused", "auto"),
    "ACCEL_DETERMINISTIC_OPS": ("deterministic_ops", "0"),
    "ACCEL_NUMBA": ("numba", "1"),
    "ACCEL_NUMBA_PARALLEL": ("numba_parallel", "0"),
    "ACCEL_CUDA_GRAPHS": ("cuda_graphs", "0"),
}


def _flag(name, value):
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError("environment variable %s: expected 1 or 0 (true/false, yes/no, on/off), got %r" % (name, value))


def _fused(name, value):
    v = value.strip().lower()
    if v not in FUSED_MODES:
        raise ValueError("environment variable %s: expected one of %s, got %r" % (name, "|".join(FUSED_MODES), value))
    return v


def _device(name, value):
    # parsed on first use by backend.default_device, which can tell a missing GPU from a typo
    return value.strip()


CUDA_GRAPH_MODES = ("whole_step",)  # beside on/off: see set_cuda_graphs


def _cuda_graphs_value(name, value):
    v = value.strip().lower()
    if v in CUDA_GRAPH_MODES:
        return v
    try:
        return _flag(name, v)
    except ValueError:
        raise ValueError("environment variable %s: expected 1, 0 or whole_step, got %r" % (name, value)) from None


_PARSE = {"device": _device, "fused": _fused, "deterministic_ops": _flag, "numba": _flag, "numba_parallel": _flag,
          "cuda_graphs": _cuda_graphs_value}


def read_environment(environ=None) -> Environment:
    """The settings accel takes from `environ` (os.environ by default); raises ValueError naming the
    variable for a value it cannot use. accel calls this once, at import, into `ENV`."""
    environ = os.environ if environ is None else environ
    fields = {}
    for name, (field, default) in VARIABLES.items():
        value = environ.get(name)
        fields[field] = _PARSE[field](name, default if value is None or value.strip() == "" else value)
    return Environment(**fields)


ENV = read_environment()

# --- fused-kernel mode: per thread (context) -----------------------------------------------

_fused_mode = contextvars.ContextVar("accel_fused_mode", default=ENV.fused)


def _check_fused_mode(mode):
    if mode not in FUSED_MODES:
        raise ValueError("fused mode must be one of %s, got %r" % (FUSED_MODES, mode))


def fused_mode() -> str:
    """This thread's fused-kernel mode: "auto", "always" or "never"."""
    return _fused_mode.get()


def set_fused_mode(mode: str) -> None:
    """Sets this thread's fused-kernel mode (other threads keep theirs; new threads start from
    ACCEL_FUSED). Inside a `with fused(...)` block it lasts until the block ends."""
    _check_fused_mode(mode)
    _fused_mode.set(mode)


@contextlib.contextmanager
def fused(mode: str):
    """This thread's fused-kernel mode inside the block: `with accel.config.fused("never"): ...`."""
    _check_fused_mode(mode)
    token = _fused_mode.set(mode)
    try:
        yield
    finally:
        _fused_mode.reset(token)


# --- op determinism: process-wide, as TensorFlow's -----------------------------------------

_deterministic = ENV.deterministic_ops


def enable_op_determinism() -> None:
    """As tf.config.experimental.enable_op_determinism, for the whole process: scatter-adds
    (gather/Embedding gradients) on the GPU sum repeated indices in a fixed order instead of with
    atomics: bitwise repeatable, somewhat slower. The NumPy path always is. On the CPU, fused mode
    "auto" then loads numba before the first fused op instead of in the background, so which path an
    op takes does not depend on timing."""
    global _deterministic
    _deterministic = True


def disable_op_determinism() -> None:
    global _deterministic
    _deterministic = False


def op_determinism_enabled() -> bool:
    return _deterministic


# --- CUDA graphs for accel.function's plans on the GPU: process-wide ------------------------

_cuda_graphs = ENV.cuda_graphs


def set_cuda_graphs(enabled) -> None:
    """Whether accel.function captures its plans into CUDA graphs on the GPU (accel.cuda_plan): False; True
    (runs of kernel steps between cuBLAS GEMMs and host steps); or "whole_step" (GEMMs that accel's own
    kernel serves and optimizer updates that read their step from the device go inside the graphs too, so a
    training step can be one graph). Off by default until the gpu-marked tests have passed on a GPU."""
    global _cuda_graphs
    if isinstance(enabled, str):
        if enabled not in CUDA_GRAPH_MODES:
            raise ValueError("set_cuda_graphs: expected True, False or %s, got %r"
                             % (" or ".join(map(repr, CUDA_GRAPH_MODES)), enabled))
        _cuda_graphs = enabled
    else:
        _cuda_graphs = bool(enabled)


def cuda_graphs() -> bool:
    return bool(_cuda_graphs)


def cuda_graphs_mode():
    """What set_cuda_graphs was given: False, True or "whole_step"."""
    return _cuda_graphs


def cuda_graphs_whole_step() -> bool:
    return _cuda_graphs == "whole_step"


experimental = SimpleNamespace(enable_op_determinism=enable_op_determinism,
                               disable_op_determinism=disable_op_determinism)
