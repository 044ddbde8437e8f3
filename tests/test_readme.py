"""The README's tour runs as written (so the documented API stays true)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tour_runs():
    text = README.read_text()
    code = re.search(r"## A short tour\n\n```python\n(.*?)```", text, re.S)
    assert code, "the README lost its tour"
    namespace: dict = {}
    exec(compile(code.group(1), str(README), "exec"), namespace)
    assert namespace["pe"].shape == (6, 8)
    assert set(namespace["out"]) == {"energy", "forces"}
