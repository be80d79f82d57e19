"""Build the Cython core: one extension module per component in cython/pastedb/core.

PASTEDB_DEBUG=1 turns on annotation, line tracing, C assertions and -Wall -Wconversion.
"""

import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("PASTEDB_DEBUG", "") not in ("", "0")
HERE = os.path.dirname(os.path.abspath(__file__))

compile_args = ["-O2", "-fno-strict-aliasing", "-Wno-unused-function"]
macros = []
if DEBUG:
    compile_args = ["-O0", "-g", "-Wall", "-Wconversion", "-UNDEBUG"]
    macros = [("CYTHON_TRACE_NOGIL", "1")]

# PASTEDB_ONLY=index,resp builds just those modules (a quick edit-compile loop).
ONLY = {m for m in os.environ.get("PASTEDB_ONLY", "").split(",") if m}

extensions = []
for src in sorted(glob.glob("cython/pastedb/core/*.pyx")):
    name = os.path.splitext(os.path.basename(src))[0]
    if ONLY and name not in ONLY:
        continue
    extensions.append(
        Extension(
            f"pastedb.core.{name}",
            [src],
            include_dirs=["cython/include"],
            extra_compile_args=compile_args,
            define_macros=macros,
            libraries=["pthread"],
        )
    )

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["cython"],
        language_level=3,
        annotate=DEBUG,
        nthreads=int(os.environ.get("PASTEDB_BUILD_JOBS", "2")),
        compiler_directives={
            "boundscheck": DEBUG,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": DEBUG,
            "linetrace": DEBUG,
            "embedsignature": True,
        },
    ),
)
