"""Optional native CPU kernels: C sources shipped in the package, compiled on first use with
the system C compiler and loaded with :mod:`ctypes`; never required.

A kernel is used only where PyTorch's operations cannot fuse the work (the SO(2) product
edge by edge, :mod:`geobasis.products._so2_native`); every caller keeps its PyTorch
form, which runs when no library is available, on CUDA, under ``torch.compile`` and for
second derivatives.

* :func:`library` compiles ``source`` once per machine (``cc -O3 -march=native
  -fno-math-errno``, the compiler's default C dialect, so that multiply-adds may fuse and
  square roots vectorise; without
  ``-march=native`` if the compiler refuses it) into the cache folder
  (``$GEOBASIS_CACHE``, else ``$XDG_CACHE_HOME/geobasis`` or ``~/.cache/geobasis``; the
  system's temporary folder if that is not writable).  The file name carries a hash of the
  source, the compiler, the flags and the CPU's model and features, so a cache shared
  between machines never loads code built for another CPU.  Written to a temporary name
  and renamed: concurrent processes never load half a file.
* ``GEOBASIS_NATIVE=0`` turns every native kernel off.  A failed build warns once and
  returns ``None``; the callers then use their PyTorch form.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

__all__ = ["REAL", "library", "kernels", "enabled", "parallel"]

#: The ``-D`` flag that makes a kernel's element type ``real`` that of a torch dtype.
REAL = {torch.float32: "REAL=float", torch.float64: "REAL=double"}

_LOCK = threading.Lock()
_POOL: list[tuple[int, ThreadPoolExecutor]] = []  # (process id, pool): none across a fork
_LIBRARIES: dict[tuple[Path, tuple[str, ...]], ctypes.CDLL | None] = {}


def enabled() -> bool:
    """Whether native kernels may be used (``GEOBASIS_NATIVE`` is not ``0``)."""
    return os.environ.get("GEOBASIS_NATIVE", "1") != "0"


def library(source: Path, defines: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """The compiled ``source`` (a C file) loaded with ctypes, built on first use and cached
    on disk; ``defines`` (``"NAME=value"``) are passed as ``-D`` flags, one library per
    set.  ``None`` when native kernels are off or no compiler can build it."""
    if not enabled():
        return None
    key = (source, tuple(defines))
    with _LOCK:
        if key not in _LIBRARIES:
            _LIBRARIES[key] = _build(source, key[1])
        return _LIBRARIES[key]


_DECLARED: set[int] = set()


def kernels(source: Path, dtype: torch.dtype, signatures: dict[str, list],
            returns: dict[str, object] | None = None) -> ctypes.CDLL | None:  # fmt: skip
    """:func:`library` of ``source`` built for ``dtype`` (:data:`REAL`), its functions'
    argument types declared from ``signatures`` (name -> ctypes types) and their return
    types from ``returns`` (none if absent); ``None`` when unavailable or ``dtype`` is
    neither float32 nor float64."""
    if dtype not in REAL:
        return None
    lib = library(source, (REAL[dtype],))
    if lib is not None and id(lib) not in _DECLARED:
        for name, arguments in signatures.items():
            function = getattr(lib, name)
            function.argtypes, function.restype = arguments, (returns or {}).get(name)
        _DECLARED.add(id(lib))
    return lib


def _compiler() -> str | None:
    names = [os.environ.get("CC", ""), "cc", "gcc", "clang"]
    return next((path for name in names if name and (path := shutil.which(name))), None)


def _cpu_signature() -> str:
    """The CPU's model and feature flags (Linux), else what :mod:`platform` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "".join(sorted({x for x in lines if x.startswith(("model name", "flags"))}))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _cache_folder() -> Path:
    base = os.environ.get("GEOBASIS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "geobasis"
    )
    folder = Path(base) / "native"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    user = os.getuid() if hasattr(os, "getuid") else os.getlogin()  # no getuid on Windows
    fallback = Path(tempfile.gettempdir()) / f"geobasis-native-{user}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _build(source: Path, defines: tuple[str, ...]) -> ctypes.CDLL | None:
    compiler = _compiler()
    if compiler is None:
        return _unavailable(source, "no C compiler (cc, gcc or clang) found")
    text = source.read_bytes()
    for flags in (["-O3", "-march=native", "-fno-math-errno"], ["-O3"]):
        flags = flags + [f"-D{define}" for define in defines]
        key = b"\0".join([text, compiler.encode(), " ".join(flags).encode(),
                          _cpu_signature().encode()])  # fmt: skip
        target = _cache_folder() / f"{source.stem}-{hashlib.sha256(key).hexdigest()[:16]}.so"
        if not target.exists():
            partial = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            command = [compiler, *flags, "-shared", "-fPIC", str(source),
                       "-o", str(partial)]  # fmt: skip
            run = subprocess.run(command, capture_output=True, text=True)
            if run.returncode != 0:
                partial.unlink(missing_ok=True)
                error = run.stderr.strip().splitlines()[-1:] or ["(no message)"]
                continue
            os.replace(partial, target)
        try:
            return ctypes.CDLL(str(target))
        except OSError as exc:
            error = [str(exc)]
    return _unavailable(source, f"{compiler} failed: {error[0]}")


def _unavailable(source: Path, reason: str) -> None:
    warnings.warn(
        f"geobasis: native kernel {source.name} not built ({reason}); using PyTorch "
        "operations instead (set GEOBASIS_NATIVE=0 to silence this)",
        RuntimeWarning,
        stacklevel=3,
    )
    return None


def parallel(count: int, part: Callable, accumulator: torch.Tensor | None = None,
             minimum: int = 16) -> None:  # fmt: skip
    """Runs ``part(start, stop, accumulator)`` over ``count`` rows split between up to
    ``torch.get_num_threads()`` Python threads (ctypes releases the GIL while C runs), at
    least ``minimum`` rows each (a split costs ~20 us).  Each thread adds to its own copy
    of a shared ``accumulator``, summed into it at the end."""
    threads = max(1, min(torch.get_num_threads(), count // max(minimum, 1)))
    if threads == 1:
        part(0, count, accumulator)
        return
    bounds = [count * k // threads for k in range(threads + 1)]
    copies = [None if accumulator is None else torch.zeros_like(accumulator)
              for _ in range(threads)]  # fmt: skip
    with _LOCK:  # a forked child (data-loader workers) makes its own pool
        if not _POOL or _POOL[0][0] != os.getpid() or _POOL[0][1]._max_workers < threads:
            pool = ThreadPoolExecutor(threads, thread_name_prefix="geobasis-native")
            _POOL[:] = [(os.getpid(), pool)]
        pool = _POOL[0][1]
    jobs = [pool.submit(part, bounds[k], bounds[k + 1], copies[k]) for k in range(threads)]
    for job in jobs:
        job.result()
    if accumulator is not None:
        accumulator += torch.stack(copies).sum(0)
