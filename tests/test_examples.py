"""The SFBC example runs end to end on a tiny budget and writes its table and plot."""

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
