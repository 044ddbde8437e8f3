import os
from pathlib import Path

import pytest
import torch

pytest_plugins = ["geobasis.testing.pytest_plugin"]

DATA = Path(
    os.environ.get("GEOBASIS_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@pytest.fixture
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"reference data folder {DATA} is absent (set GEOBASIS_DATA)")
    return DATA


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
