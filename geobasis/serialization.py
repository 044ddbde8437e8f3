"""Files written whole or not at all, and checkpoints that load without unpickling code.

:func:`atomic_path` hands out a temporary file in the target's folder and renames it over
the target once the writer is done (and the data are on disk), so a run killed at any
moment leaves either the previous complete file or the new one, never a truncated file (a
SIGKILL during a write can leave the hidden ``.<name>.*.tmp`` file, which a resumed run
deletes).  Checkpoints hold only tensors, numbers, strings and containers, so they load with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_path", "save_checkpoint", "load_checkpoint"]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """``with atomic_path(target) as temporary: write(temporary)``: ``target`` is replaced by
    the written file only when the block finishes without an exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save(state)`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint loaded with ``weights_only=True`` (no code runs); clear errors for a
    missing or corrupted file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: cannot load checkpoint (corrupted?): {error}") from error
