import subprocess
import sys
import time

NO_NETWORK = """
import socket
def refuse(*args, **kwargs):
    raise RuntimeError("network access at import time")
socket.socket.connect = refuse
socket.create_connection = refuse
import geobasis, geobasis.o3, geobasis.radial, geobasis.graph, geobasis.testing, geobasis.typing
import geobasis.frames, geobasis.pe, geobasis.nn
print(geobasis.__version__)
"""


def test_import_is_fast_and_offline():
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", "import geobasis"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert time.perf_counter() - start < 2.0
    result = subprocess.run([sys.executable, "-c", NO_NETWORK], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_optional_accelerators_are_probed_flags():
    from geobasis import typing as gtyping

    for name in ("WITH_CPU_COMPILER", "WITH_CUDA"):
        assert isinstance(getattr(gtyping, name), bool)


def test_lazy_subpackages():
    import geobasis

    assert geobasis.o3.spherical_harmonics is not None
    try:
        geobasis.nonexistent  # noqa: B018
    except AttributeError as exc:
        assert "nonexistent" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
