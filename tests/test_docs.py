"""Docs that cannot drift: the API reference builds from the docstrings without a warning,
every Python block of README.md and docs/ runs as written, and every ``geobasis`` command
line they show parses with the real CLI."""

import os
import pkgutil
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(language):
    for path in DOCUMENTS:
        for number, match in enumerate(
            re.finditer(rf"^```{language}\n(.*?)^```", path.read_text(), re.S | re.M)
        ):
            yield pytest.param(path, match.group(1), id=f"{path.name}-{number}")


@pytest.mark.parametrize(("path", "code"), list(_blocks("python")))
def test_python_blocks_run_as_written(path, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    exec(compile(code, str(path), "exec"), {"__name__": "__doc_block__"})


def _command_lines():
    for param in _blocks("bash"):
        path, code = param.values
        text = code.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("#")[0].strip()
            for command in re.split(r"&&|;", line):
                words = shlex.split(command)
                if words and words[0] == "geobasis":
                    yield pytest.param(words[1:], id=f"{path.name}: {' '.join(words[:2])}")
                elif "geobasis.cli" in words:
                    yield pytest.param(words[words.index("geobasis.cli") + 1 :], id=path.name)


@pytest.mark.parametrize("argv", list(_command_lines()))
def test_documented_command_lines_parse(argv):
    from geobasis.cli import build_parser

    argv = [a.replace("<name>", "run") for a in argv]
    build_parser().parse_args(argv)


def test_api_reference_covers_every_public_module():
    import geobasis

    pages = "".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.rst"))
    missing = [
        info.name
        for info in pkgutil.walk_packages(geobasis.__path__, "geobasis.")
        if not info.ispkg
        and not any(part.startswith("_") for part in info.name.split("."))
        and info.name.split(".")[-1] != "pytest_plugin"
        and f"automodule:: {info.name}\n" not in pages
    ]
    assert not missing, f"add these modules to docs/api/*.rst: {missing}"


def test_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="the docs extra installs sphinx")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(ROOT / "docs" / "api"), str(tmp_path / "html")],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-5000:]
