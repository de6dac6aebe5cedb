"""Benchmarks of accel against a hand-written NumPy floor and peer frameworks.

Kept free of imports: `python -m bench.compare` must adjust BLAS and thread
environment variables before NumPy is first imported.
"""
