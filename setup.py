"""Build of the compiled frame core.

Knobs are environment variables, not edits:
  FASTWS_ANNOTATE=1   write Cython's annotated HTML next to the sources
  FASTWS_DEBUG=1      build with -O0 -g and Cython's line tracing
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTWS_DEBUG") == "1"

compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]
macros = [("CYTHON_TRACE", "1")] if DEBUG else []

extensions = [
    Extension(
        "fastws._core",
        ["fastws/_core.pyx"],
        extra_compile_args=compile_args,
        define_macros=macros,
    ),
    # MEXC's protobuf pushes decoded in place; cimports fastws._core.
    Extension(
        "exchanges.mexc._fastpb",
        ["exchanges/mexc/_fastpb.pyx"],
        extra_compile_args=compile_args,
        define_macros=macros,
    ),
    # The bus consumer's per-message loop: NATS HMSG bytes into the frame core.
    Extension(
        "fastws.bus.consumer_read",
        ["fastws/bus/consumer_read.pyx"],
        extra_compile_args=compile_args,
        define_macros=macros,
    ),
    # The compiled order book and its JSON level reader (includes _json.pxi).
    Extension(
        "fastws.book._book",
        ["fastws/book/_book.pyx"],
        extra_compile_args=compile_args,
        define_macros=macros,
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
            "linetrace": DEBUG,
        },
        annotate=os.environ.get("FASTWS_ANNOTATE") == "1",
    ),
)
