"""Native kernels: built once per source and machine, cached on disk, optional."""

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
