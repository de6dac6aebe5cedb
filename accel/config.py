"""Runtime switches: the fused-kernel mode and device queries."""

from collections import namedtuple
from types import SimpleNamespace

from accel.backend import (  # noqa: F401
    disable_op_determinism,
    enable_op_determinism,
    fused,
    fused_mode,
    get_soft_device_placement,
    has_gpu,
    op_determinism_enabled,
    set_fused_mode,
    set_soft_device_placement,
)

experimental = SimpleNamespace(enable_op_determinism=enable_op_determinism,
                               disable_op_determinism=disable_op_determinism)


def list_physical_devices(device_type=None):
    from accel import backend  # noqa: PLC0415

    devs = [backend.CPU] + [backend.Device("gpu", i) for i in range(backend.gpu_count())]
    if device_type is not None:
        devs = [d for d in devs if d.kind == device_type.lower()]
    return devs


LogicalDevice = namedtuple("LogicalDevice", ["name", "device_type"])


def list_logical_devices(device_type=None):
    """TF's logical devices: one per physical device here (`LogicalDevice(name='/device:CPU:0', device_type='CPU')`)."""
    return [LogicalDevice("/device:%s:%d" % (d.kind.upper(), d.index), d.kind.upper())
            for d in list_physical_devices(device_type)]
