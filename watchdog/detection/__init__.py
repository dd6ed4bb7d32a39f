"""The detection core: bundle → preprocessing → model → per-print baseline → decision.

Numpy and OpenCV only (never TensorFlow), no I/O besides reading the bundle: the daemon,
``replay``, ``demo``, the trainer's calibration and the benchmarks share this code.
"""
