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
