"""Array backend: NumPy on the CPU, CuPy on CUDA GPUs.

This is the only module that imports cupy. Everything else asks it for the
array module of an array (`xp_of`) or of a device (`Device.xp`).
"""

from __future__ import annotations

import contextlib
import threading
import warnings

import numpy as np

from accel import settings

# The fused-kernel switch (per thread) and op determinism (process-wide) live in accel.settings with the
# environment; the ops ask backend for them, beside the choice of array module.
from accel.settings import (  # noqa: F401
    disable_op_determinism,
    enable_op_determinism,
    fused,
    fused_mode,
    op_determinism_enabled,
    set_fused_mode,
)

# log(0), 0/0 and overflow give inf/nan as in TF, which does not warn; NumPy's warnings would point
# into accel's own files. User code calling NumPy keeps its warnings (the filter matches accel's modules).
warnings.filterwarnings("ignore", message=r"(divide by zero|invalid value|overflow|underflow) encountered",
                        category=RuntimeWarning, module=r"accel(\.|$)")

_cupy = None
_cupy_checked = False


def cupy():
    """The cupy module, or None when it is not installed (imported on first use)."""
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy as cp  # noqa: PLC0415

            _cupy = cp
        except Exception:  # not installed, or broken CUDA libraries
            _cupy = None
    return _cupy


def cupyx():
    """The cupyx module (scatter_add, scipy.special), or None."""
    if cupy() is None:
        return None
    import cupyx as cx  # noqa: PLC0415
    import cupyx.scipy.special  # noqa: F401, PLC0415

    return cx


def gpu_count() -> int:
    cp = cupy()
    if cp is None:
        return 0
    try:
        return int(cp.cuda.runtime.getDeviceCount())
    except Exception:
        return 0


def has_gpu() -> bool:
    """True when CuPy is installed and at least one CUDA device answers."""
    return gpu_count() > 0


class Device:
    """A place where arrays live: `Device("cpu")` or `Device("gpu", 0)`."""

    __slots__ = ("kind", "index")

    def __init__(self, kind: str, index: int = 0):
        self.kind = kind
        self.index = index

    @property
    def xp(self):
        return np if self.kind == "cpu" else cupy()

    def __eq__(self, other):
        if isinstance(other, str):
            other = parse_device(other)
        return isinstance(other, Device) and other.kind == self.kind and other.index == self.index

    def __hash__(self):
        return hash((self.kind, self.index))

    def __str__(self):
        return "/job:localhost/replica:0/task:0/device:%s:%d" % (self.kind.upper(), self.index)

    def __repr__(self):
        return "Device(%r)" % (self.short_name,)

    @property
    def short_name(self):
        return "cpu" if self.kind == "cpu" else "gpu:%d" % self.index


CPU = Device("cpu", 0)


def parse_device(spec) -> Device:
    """Accepts 'cpu', 'gpu', 'gpu:1', 'cuda:0', '/GPU:0', '/device:CPU:0' or a Device."""
    if isinstance(spec, Device):
        return spec
    if not isinstance(spec, str):
        raise TypeError("device: expected a string such as 'cpu' or 'gpu:0', got %r" % (spec,))
    s = spec.strip().lower()
    if s.startswith("/job:"):
        s = s.split("device:", 1)[-1]
    s = s.lstrip("/").replace("device:", "")
    kind, _, index = s.partition(":")
    if kind == "cuda":
        kind = "gpu"
    if kind not in ("cpu", "gpu") or (index and not index.isdigit()):
        raise ValueError("device: expected 'cpu' or 'gpu:N', got %r" % (spec,))
    idx = int(index or 0)
    if kind == "cpu":
        return CPU
    n = gpu_count()
    if idx >= n:
        raise RuntimeError(
            "device %r: %s" % (spec, "no CUDA GPU is available (CuPy %s)"
                               % ("is not installed" if cupy() is None else "found no device")
                               if n == 0 else "only %d GPU(s) are available" % n)
        )
    return Device("gpu", idx)


_state = threading.local()
_default_device = None


def default_device() -> Device:
    """The GPU when CuPy and a device are available (unless ACCEL_DEVICE says otherwise), else the CPU."""
    global _default_device
    if _default_device is None:
        if settings.ENV.device:
            _default_device = parse_device(settings.ENV.device)
        else:
            _default_device = Device("gpu", 0) if has_gpu() else CPU
    return _default_device


def current_device() -> Device:
    stack = getattr(_state, "stack", None)
    if stack:
        return stack[-1]
    return default_device()


_soft_placement = True
_soft_warned = False


def set_soft_device_placement(enabled):
    """As tf.config.set_soft_device_placement: when on (the default), `with device("gpu:0")` on a machine
    without that GPU runs on the CPU with a warning instead of raising."""
    global _soft_placement
    _soft_placement = bool(enabled)


def get_soft_device_placement():
    return _soft_placement


def _placed(spec):
    """The device `with device(spec)` uses: spec, or the CPU where spec names a missing GPU and soft
    placement is on (code written on a GPU machine runs in CPU-only CI)."""
    try:
        return parse_device(spec)
    except RuntimeError as e:
        if not _soft_placement:
            raise
        global _soft_warned
        if not _soft_warned:  # once per process, as TF logs it
            _soft_warned = True
            warnings.warn("%s; soft device placement runs it on the CPU (accel.config.set_soft_device_placement("
                          "False) makes this an error)" % e, RuntimeWarning, stacklevel=4)
        return CPU


@contextlib.contextmanager
def device(spec):
    """Places new tensors on `spec` inside the block: `with accel.device("cpu"): ...`."""
    d = _placed(spec)
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(d)
    try:
        if d.kind == "gpu":
            with cupy().cuda.Device(d.index):
                yield d
        else:
            yield d
    finally:
        stack.pop()


def is_cupy_array(a) -> bool:
    cp = _cupy
    return cp is not None and isinstance(a, cp.ndarray)


def device_of(a) -> Device:
    if type(a) is np.ndarray or not is_cupy_array(a):
        return CPU
    return Device("gpu", int(a.device.id))


def xp_of(a):
    """The array module (numpy or cupy) that owns array `a`."""
    if type(a) is np.ndarray:
        return np
    if is_cupy_array(a):
        return _cupy
    return np


def may_share_memory(a, b) -> bool:
    """Whether arrays a and b may overlap (False for arrays of different devices or kinds)."""
    xp = xp_of(a)
    return xp is xp_of(b) and bool(xp.may_share_memory(a, b))


def to_numpy(a) -> np.ndarray:
    """A host NumPy array (copies from the GPU)."""
    if is_cupy_array(a):
        return a.get()
    return np.asarray(a)


def to_device(a, dev: Device):
    """Moves array `a` to `dev` (a no-op when it is already there)."""
    if dev.kind == "cpu":
        return to_numpy(a)
    cp = cupy()
    with cp.cuda.Device(dev.index):
        return cp.asarray(a)


def asarray_on(value, dev: Device, dtype=None):
    """Builds an array from host data (Python scalars, lists, NumPy) on `dev`."""
    if dev.kind == "cpu":
        return np.asarray(value, dtype=dtype)
    cp = cupy()
    with cp.cuda.Device(dev.index):
        return cp.asarray(value, dtype=dtype)


def from_dlpack(obj):
    """An array from any object with `__dlpack__`: NumPy for CPU producers, CuPy for CUDA ones."""
    dev_type = None
    if hasattr(obj, "__dlpack_device__"):
        dev_type, _ = obj.__dlpack_device__()
    if dev_type in (2, 13):  # kDLCUDA, kDLCUDAManaged
        cp = cupy()
        if cp is None:
            raise RuntimeError("from_dlpack: the producer holds CUDA memory but CuPy is not installed")
        return cp.from_dlpack(obj)
    return np.from_dlpack(obj)


def synchronize():
    """Waits for the GPU's queued work (no-op on the CPU); benchmarks call it around their clocks."""
    if _cupy is not None and has_gpu():
        _cupy.cuda.get_current_stream().synchronize()



# --- NCCL (cupy.cuda.nccl), for accel.distribute: every call into it is here --------------------------


def nccl():
    """cupy.cuda.nccl when CuPy and libnccl load (pip install nvidia-nccl-cu13), else None."""
    if cupy() is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from cupy.cuda import nccl as nccl_mod  # noqa: PLC0415
    except Exception:
        return None
    return nccl_mod if nccl_mod.available else None


def nccl_available() -> bool:
    return nccl() is not None and has_gpu()


def nccl_unique_id():
    """A new NCCL unique id (bytes) for rank 0 to broadcast over MPI."""
    return nccl().get_unique_id()


def nccl_comm(size, unique_id, rank):
    """This process's NCCL communicator (one GPU per rank: the current device)."""
    return nccl().NcclCommunicator(size, unique_id, rank)


def nccl_comm_init_all(device_ids):
    """One NCCL communicator per local GPU (MirroredStrategy in one process)."""
    return nccl().NcclCommunicator.initAll(list(device_ids))


def _nccl_dtype(nccl_mod, a):
    types = {"float16": nccl_mod.NCCL_FLOAT16, "float32": nccl_mod.NCCL_FLOAT32, "float64": nccl_mod.NCCL_FLOAT64,
             "int32": nccl_mod.NCCL_INT32, "int64": nccl_mod.NCCL_INT64}
    if a.dtype.name not in types:
        raise TypeError("NCCL all-reduce: dtype %s is not supported (float16/32/64, int32/64)" % a.dtype.name)
    return types[a.dtype.name]


def nccl_all_reduce(comm, send, recv, op="sum"):
    """recv = the sum over ranks of send (CuPy arrays on this rank's GPU), on the current stream."""
    nccl_mod = nccl()
    stream = _cupy.cuda.get_current_stream()
    comm.allReduce(send.data.ptr, recv.data.ptr, send.size, _nccl_dtype(nccl_mod, send), nccl_mod.NCCL_SUM,
                   stream.ptr)
    return recv


def nccl_broadcast(comm, buf, root):
    nccl_mod = nccl()
    stream = _cupy.cuda.get_current_stream()
    comm.bcast(buf.data.ptr, buf.size, _nccl_dtype(nccl_mod, buf), root, stream.ptr)
    return buf


def nccl_all_reduce_group(comms, arrays):
    """Sums `arrays` (one per GPU, communicator i for arrays[i]) with one grouped NCCL all-reduce; returns the
    results, one per GPU (each on its device, after that device's current stream)."""
    nccl_mod = nccl()
    outs = []
    for a in arrays:
        with _cupy.cuda.Device(a.device.id):
            outs.append(_cupy.empty_like(a))
    nccl_mod.groupStart()
    try:
        for comm, a, out in zip(comms, arrays, outs):
            with _cupy.cuda.Device(a.device.id):
                stream = _cupy.cuda.get_current_stream()
                comm.allReduce(a.data.ptr, out.data.ptr, a.size, _nccl_dtype(nccl_mod, a), nccl_mod.NCCL_SUM,
                               stream.ptr)
    finally:
        nccl_mod.groupEnd()
    return outs
