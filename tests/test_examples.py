"""The examples run end to end on a tiny budget and write their tables and plots."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_sfbc_sph_example_smoke(tmp_path):
    pytest.importorskip("matplotlib")
    command = [
        sys.executable,
        str(ROOT / "examples" / "sfbc_sph_1d.py"),
        "--bases",
        "fourier",
        "fourier_odd",
        "--steps",
        "30",
        "--particles",
        "64",
        "--neighbours",
        "8",
        "--frames",
        "2",
        "--train-seeds",
        "0",
        "--test-seeds",
        "1",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    table = json.loads((tmp_path / "sfbc_sph_1d.json").read_text())["normalised_rmse"]
    assert set(table) == {"fourier", "fourier_odd"}
    assert table["fourier_odd"]["density"] > 0.9  # odd-only cannot learn the density
    assert (tmp_path / "sfbc_sph_1d.png").stat().st_size > 10_000


def test_qm9_positional_encodings_example_smoke(tmp_path):
    pytest.importorskip("matplotlib")
    import importlib.util

    if importlib.util.find_spec("qm9pack") is None:
        pytest.skip("qm9pack is not installed (pip install 'geobasis[qm9]')")
    command = [
        sys.executable,
        str(ROOT / "examples" / "qm9_positional_encodings.py"),
        "--molecules", "300", "--train", "200", "--val", "50", "--epochs", "1",
        "--pes", "none", "spe", "--hidden", "16", "--layers", "2",
        "--root", str(tmp_path / "qm9"), "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    table = json.loads((tmp_path / "out" / "qm9_pe.json").read_text())["results"]
    assert [r["encoding"] for r in table] == ["no PE", "SPE"]
    assert all(r["test_mae"] > 0 for r in table)
    assert (tmp_path / "out" / "qm9_pe.png").stat().st_size > 10_000
