import subprocess
import sys

from geobasis.cli import main


def test_check_command_passes_and_prints_table(capsys):
    assert main(["check", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "spherical_harmonics" in out and "checks passed" in out and "FAIL" not in out


def test_check_command_fails_loudly_on_a_broken_check(monkeypatch, capsys):
    import geobasis.testing.checks as checks

    monkeypatch.setattr(checks, "CHECKS", [("always wrong", lambda: 1.0, 0.0)])
    assert main(["check", "--quiet"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "geobasis.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "check" in result.stdout


def test_errors_are_one_line_and_debug_shows_the_traceback(capsys):
    import pytest

    from geobasis.cli import main
    from geobasis.typing import WITH_CUDA

    if not WITH_CUDA:
        assert main(["train", "--device", "cuda", "--epochs", "1"]) == 2
        error = capsys.readouterr().err
        assert "device: 'cuda' but this torch sees no CUDA device" in error
        assert len(error.strip().splitlines()) == 1
    assert main(["evaluate", "missing.pt"]) == 2
    assert "no checkpoint at missing.pt" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        main(["--debug", "evaluate", "missing.pt"])


def test_device_auto_picks_what_exists():
    import torch

    from geobasis.train.run import _check_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert _check_device("auto").type == expected
