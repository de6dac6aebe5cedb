"""Runtime switches: the fused-kernel mode and device queries."""

from accel.backend import fused, fused_mode, has_gpu, set_fused_mode  # noqa: F401


def list_physical_devices(device_type=None):
    from accel import backend  # noqa: PLC0415

    devs = [backend.CPU] + [backend.Device("gpu", i) for i in range(backend.gpu_count())]
    if device_type is not None:
        devs = [d for d in devs if d.kind == device_type.lower()]
    return devs
