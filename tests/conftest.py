import numpy as np
import pytest

import accel
from accel import backend

DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]


@pytest.fixture(params=DEVICES)
def device(request):
    """Runs the test on each backend: NumPy always, CuPy when a GPU exists (else skipped)."""
    if request.param == "gpu" and not backend.has_gpu():
        pytest.skip("no CUDA GPU: CuPy %s" % ("is not installed" if backend.cupy() is None else "found no device"))
    with accel.device(request.param):
        yield request.param


@pytest.fixture(autouse=True, scope="session")
def _numba_loaded():
    """Fused mode "auto" loads numba in the background; tests compare runs exactly, so every test sees the
    steady state (tests of the start-up path run in fresh interpreters)."""
    from accel import cpu_kernels

    cpu_kernels.wait_warmed(600)


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    accel.random.set_seed(0)
