"""Files written whole or not at all, and checkpoints that load without unpickling code.

:func:`atomic_path` hands out a temporary file in the target's folder and renames it over
the target once the writer is done (and the data are on disk), so a run killed at any
moment leaves either the previous complete file or the new one, never a truncated file (a
SIGKILL during a write can leave the hidden ``.<name>.*.tmp`` file, which a resumed run
deletes).  Checkpoints hold only tensors, numbers, strings and containers, so they load with
``torch.load(..., weights_only=True)``, and carry a SHA-256 of their
contents that loading verifies (a flipped byte is an error naming the file, not NaN weights).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_path", "save_checkpoint", "load_checkpoint", "state_checksum"]


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


def state_checksum(state: Any) -> str:
    """SHA-256 of every tensor's bytes and every plain value of ``state``, in key order."""
    digest = hashlib.sha256()

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
            if flat.numel():
                digest.update(flat.view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                if key != "checksum":
                    digest.update(str(key).encode())
                    visit(value[key])
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        else:
            digest.update(repr(value).encode())

    visit(state)
    return digest.hexdigest()


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save(state)`` to ``path`` through :func:`atomic_path`, with a ``checksum`` of
    the state that :func:`load_checkpoint` verifies."""
    path = Path(path)
    state = {**state, "checksum": state_checksum(state)}
    try:
        with atomic_path(path) as temporary:
            torch.save(state, temporary)
    except (RuntimeError, OSError) as error:
        free = shutil.disk_usage(path.parent).free / 2**20
        raise OSError(
            errno.ENOSPC if free < 64 else errno.EIO,
            f"cannot write the checkpoint {path} ({free:.0f} MiB free on its disk"
            f"{'; the disk is full' if free < 64 else ''}): {error}",
        ) from error


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint loaded with ``weights_only=True`` (no code runs); clear errors for a
    missing or corrupted file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: cannot load checkpoint (corrupted?): {error}") from error
    if isinstance(state, dict) and "checksum" in state:  # written since format 2
        if state["checksum"] != state_checksum(state):
            raise ValueError(
                f"{path}: checkpoint checksum mismatch: the file was damaged after it was "
                "written; use another checkpoint (e.g. best.pt / last.pt)"
            )
    return state
