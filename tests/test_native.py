"""Native kernels: built once per source and machine, cached on disk, optional."""

from pathlib import Path

import pytest

from geobasis import _native

SOURCE = (
    "#include <stdint.h>\n#ifndef FACTOR\n#define FACTOR 2\n#endif\n"
    "int64_t twice(int64_t x) { return FACTOR * x; }\n"
)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty cache folder and no library loaded yet."""
    monkeypatch.setenv("GEOBASIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GEOBASIS_NATIVE", raising=False)
    monkeypatch.setattr(_native, "_LIBRARIES", {})
    return tmp_path


def _source(folder, text=SOURCE, name="twice.c"):
    path = folder / name
    path.write_text(text)
    return path


def test_builds_once_caches_on_disk_and_rebuilds_when_the_source_changes(fresh, monkeypatch):
    if _native._compiler() is None:
        pytest.skip("no C compiler on this machine")
    source = _source(fresh)
    lib = _native.library(source)
    assert lib is not None and lib.twice(21) == 42
    assert _native.library(source) is lib  # loaded once per process
    built = sorted((fresh / "cache" / "native").glob("twice-*.so"))
    assert len(built) == 1
    monkeypatch.setattr(_native, "_LIBRARIES", {})
    assert _native.library(source).twice(4) == 8  # from the disk cache: nothing new built
    assert sorted((fresh / "cache" / "native").glob("twice-*.so")) == built
    monkeypatch.setattr(_native, "_LIBRARIES", {})
    _source(fresh, SOURCE.replace("FACTOR 2", "FACTOR 3"))
    assert _native.library(source).twice(4) == 12
    assert len(list((fresh / "cache" / "native").glob("twice-*.so"))) == 2
    assert _native.library(source, ("FACTOR=5",)).twice(4) == 20  # one library per -D set
    assert _native.library(source).twice(4) == 12


def test_turned_off_by_the_environment(fresh, monkeypatch):
    monkeypatch.setenv("GEOBASIS_NATIVE", "0")
    assert not _native.enabled()
    assert _native.library(_source(fresh)) is None


def test_no_compiler_or_a_failed_build_warns_once_and_gives_none(fresh, monkeypatch):
    if _native._compiler() is None:
        pytest.skip("no C compiler on this machine")
    broken = _source(fresh, "this is not C", name="broken.c")
    with pytest.warns(RuntimeWarning, match=r"broken\.c not built .*failed"):
        assert _native.library(broken) is None
    assert _native.library(broken) is None  # remembered: no second warning or build
    monkeypatch.setattr(_native, "_compiler", lambda: None)
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        assert _native.library(_source(fresh, name="other.c")) is None


def test_kernels_build_per_dtype_and_declare_the_signatures(fresh):
    if _native._compiler() is None:
        pytest.skip("no C compiler on this machine")
    import ctypes

    import torch

    source = _source(
        fresh, "#ifndef REAL\n#define REAL float\n#endif\nvoid half(REAL *x) { *x = *x / 2; }\n"
    )
    for dtype in (torch.float32, torch.float64):
        lib = _native.kernels(source, dtype, {"half": [ctypes.c_void_p]})
        assert lib.half.argtypes == [ctypes.c_void_p] and lib.half.restype is None
        x = torch.tensor([3.0], dtype=dtype)
        lib.half(x.data_ptr())  # the element type follows the dtype
        assert x.item() == 1.5
    assert _native.kernels(source, torch.float16, {"half": [ctypes.c_void_p]}) is None


def test_parallel_covers_every_row_once_and_sums_the_accumulators(monkeypatch):
    import torch

    seen = torch.zeros(100, dtype=torch.int64)
    total = torch.zeros(3)

    def part(start, stop, accumulator):
        seen[start:stop] += 1
        accumulator += stop - start

    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        _native.parallel(100, part, total, minimum=10)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(seen, torch.ones(100, dtype=torch.int64))
    assert torch.equal(total, torch.full((3,), 100.0))


def test_an_unwritable_cache_falls_back_to_the_temporary_folder(fresh, monkeypatch):
    import tempfile

    monkeypatch.setattr(_native.os, "access", lambda path, mode: False)
    folder = _native._cache_folder()
    assert folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith("geobasis-")
