import pathlib
import sys

# helpers next to the tests (nvrtc_ctypes.py, cpu_build.py) import as top-level modules
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "sanitize: rebuilds the CPU shim with ASan/TSan and reruns kernels under it (slow)"
    )
