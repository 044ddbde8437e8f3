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


def test_wheel_and_sdist_build_and_the_wheel_imports_on_its_own(tmp_path):
    """Packaging: ``python -m build`` makes both; the wheel, installed alone, imports and
    runs (its files, not the editable checkout's)."""
    import os
    import pathlib

    import pytest

    pytest.importorskip("build", reason="the test extra installs build")
    root = pathlib.Path(__file__).resolve().parents[1]
    out = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(root)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    import zipfile

    names = zipfile.ZipFile(wheels[0]).namelist()
    assert {"geobasis/products/_so2_product.c", "geobasis/o3/_harmonics.c"} <= set(names)
    target = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index"]
    subprocess.run([*install, "--target", str(target), str(wheels[0])], check=True,
                   capture_output=True)  # fmt: skip
    check = (
        "import geobasis, torch; from geobasis import o3; "
        f"assert geobasis.__file__.startswith({str(target)!r}), geobasis.__file__; "
        "print(o3.spherical_harmonics(2, torch.randn(4, 3)).shape)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                            env=env, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torch.Size([4, 9])" in result.stdout
