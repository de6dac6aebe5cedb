import pytest

import accel as tf


@pytest.fixture
def logical_cpus(monkeypatch):
    """Splits the CPU into n logical devices for one test (restored afterwards)."""
    from accel import config

    monkeypatch.setattr(config, "_logical_config", {})

    def split(n):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)

    return split
