"""Metadata lives in setup.cfg; this file only declares the C extension.

The BLAS shim of the CPU profile (pensieve/engine/cpu.py) is optional: without
a C compiler the install goes on and the profile runs without it.
"""

import sys

from setuptools import Extension, setup

shim = Extension(
    "pensieve.engine._blas_shim",
    sources=["pensieve/engine/_blas_shim.c"],
    optional=True,
)
setup(ext_modules=[shim] if sys.platform == "linux" else [])
