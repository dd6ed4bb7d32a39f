"""printer-watchdog: a local failure detector for 3D printers (the light, TensorFlow-free side)."""

__version__ = "0.1.0"
# Lets a test (and a confused user) tell this package from PyPI's file-system `watchdog`.
IS_PRINTER_WATCHDOG = True
