"""accel.config, as tf.config: the runtime settings (accel.settings: the fused-kernel mode per thread,
op determinism process-wide, the environment read once at import) and the device queries (accel.backend;
soft device placement is process-wide, as in TensorFlow)."""

from collections import namedtuple

from accel.backend import (  # noqa: F401
    CPU,
    Device,
    get_soft_device_placement,
    gpu_count,
    has_gpu,
    set_soft_device_placement,
)
from accel.settings import (  # noqa: F401
    ENV,
    FUSED_MODES,
    VARIABLES,
    disable_op_determinism,
    enable_op_determinism,
    experimental,
    fused,
    fused_mode,
    op_determinism_enabled,
    read_environment,
    set_fused_mode,
)


def list_physical_devices(device_type=None):
    devs = [CPU] + [Device("gpu", i) for i in range(gpu_count())]
    if device_type is not None:
        devs = [d for d in devs if d.kind == device_type.lower()]
    return devs


LogicalDevice = namedtuple("LogicalDevice", ["name", "device_type"])


def list_logical_devices(device_type=None):
    """TF's logical devices: one per physical device, or as set_logical_device_configuration split it
    (`LogicalDevice(name='/device:CPU:0', device_type='CPU')`)."""
    out = []
    for d in list_physical_devices(device_type):
        count = len(_logical_config.get(d, ())) or 1 if d.kind == "cpu" else 1
        out += [LogicalDevice("/device:%s:%d" % (d.kind.upper(), d.index + k), d.kind.upper()) for k in range(count)]
    return out


# --- logical devices: tf.config.set_logical_device_configuration (several logical CPUs, as TF gives them, so
# that a MirroredStrategy's replica logic runs on a CPU-only machine; they share the host's memory and cores) ---

LogicalDeviceConfiguration = namedtuple("LogicalDeviceConfiguration",
                                        ["memory_limit", "experimental_priority", "experimental_device_ordinal"],
                                        defaults=(None, None, None))
_logical_config = {}


def set_logical_device_configuration(device, logical_devices):
    """As tf.config.set_logical_device_configuration: splits the physical CPU `device` into
    len(logical_devices) logical devices (/device:CPU:0, /device:CPU:1, ...). A GPU keeps one logical device."""
    from accel import backend  # noqa: PLC0415

    physical = list_physical_devices()
    if device not in physical:
        raise ValueError("set_logical_device_configuration: device must be one of list_physical_devices() (%s), "
                         "got %r" % (physical, device))
    configs = list(logical_devices) if logical_devices is not None else []
    if not configs or not all(isinstance(c, LogicalDeviceConfiguration) for c in configs):
        raise ValueError("set_logical_device_configuration: logical_devices must be a non-empty list of "
                         "accel.config.LogicalDeviceConfiguration, got %r" % (logical_devices,))
    if backend.parse_device(device).kind == "gpu" and len(configs) > 1:
        raise NotImplementedError("set_logical_device_configuration: splitting a GPU into several logical "
                                  "devices is not supported (one logical device per GPU)")
    _logical_config[backend.parse_device(device)] = configs


def get_logical_device_configuration(device):
    from accel import backend  # noqa: PLC0415

    return _logical_config.get(backend.parse_device(device))
