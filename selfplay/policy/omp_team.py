"""Run a compiled callback on torch's own OpenMP thread team.

Between the matmuls of a CPU decode step, torch's OpenMP worker threads spin, waiting for the
next parallel region (GNU libgomp spins for milliseconds before it sleeps). A second thread pool
(numba's OpenMP or workqueue layer, Python threads) then competes with those spinning threads for
the same cores and loses: numba's OpenMP layer made torch's own kernels tens of times slower,
and its workqueue layer was no faster than one thread. Handing the work to torch's team instead
(``GOMP_parallel`` of the libgomp torch loaded, the entry point GCC's ``#pragma omp parallel``
compiles to) puts it on the threads that are already awake.

``team()`` is None where torch's parallel backend is not OpenMP or its runtime cannot be found
(LLVM's libomp and Intel's libiomp5 export the same GNU entry points and are used as found):
callers then run the work on the calling thread. ``SELFPLAY_OMP_TEAM=0`` makes it None as well
(the same results, computed on one thread).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os

import numpy as np
import torch


class OmpTeam:
    """torch's libgomp: ``run(callback, argv, threads)`` calls the C function ``callback(argv)``
    on each of ``threads`` team threads (the caller is thread 0) and returns when all have."""

    def __init__(self, library: ctypes.CDLL):
        self._parallel = library.GOMP_parallel
        self._parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        self._parallel.restype = None
        # The callback asks the runtime which thread it is and how many there are.
        self.thread_num = library.omp_get_thread_num
        self.num_threads = library.omp_get_num_threads
        for fn in (self.thread_num, self.num_threads):
            fn.argtypes, fn.restype = [], ctypes.c_int

    def run(self, callback_address: int, argv: np.ndarray, threads: int) -> None:
        self._parallel(callback_address, argv.ctypes.data, threads, 0)


_RUNTIMES = ("libgomp", "libomp", "libiomp5")


def _torch_openmp_runtime() -> str | None:
    """The path of the OpenMP runtime torch loaded: the one inside torch's package (pip wheels
    bundle theirs; a system libgomp elsewhere in the process, numba's, is a different pool)."""
    torch_dir = os.path.dirname(torch.__file__)
    bundled = [p for name in _RUNTIMES
               for p in glob.glob(os.path.join(torch_dir, "lib", f"{name}*.so*"))]
    if bundled:
        return bundled[0]
    try:  # a torch built against a shared runtime: the one mapped into this process
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip().split(maxsplit=5)[-1]
                if os.path.basename(path).startswith(_RUNTIMES):
                    return path
    except OSError:
        pass
    return None


@functools.cache
def team() -> OmpTeam | None:
    """torch's OpenMP team, or None (see the module docstring)."""
    if os.environ.get("SELFPLAY_OMP_TEAM", "1") == "0":
        return None
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    path = _torch_openmp_runtime()
    if path is None:
        return None
    try:
        return OmpTeam(ctypes.CDLL(path))
    except (OSError, AttributeError):
        return None


__all__ = ["OmpTeam", "team"]
