"""Files written whole or not at all; checkpoints that load without running code."""

import pytest
import torch

from geobasis.serialization import atomic_path, load_checkpoint, save_checkpoint


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "state.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, target)
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half a fi")
            raise RuntimeError("disk on fire")
    assert load_checkpoint(target)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_checkpoints_refuse_code_and_name_the_file(tmp_path):
    import fractions

    torch.save({"object": fractions.Fraction(1, 3)}, tmp_path / "evil.pt")  # code, not weights
    with pytest.raises(ValueError, match="evil.pt: cannot load checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "none.pt")


def test_flipped_bytes_in_tensor_data_are_caught(tmp_path):
    """A damaged checkpoint used to load silently with wrong (NaN) weights."""
    import struct

    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.full((4096,), 1.2345)}, "epoch": 3}, path)
    assert load_checkpoint(path)["epoch"] == 3
    raw = bytearray(path.read_bytes())
    at = raw.find(struct.pack("<f", 1.2345), len(raw) // 2)
    raw[at + 3] ^= 0xFF  # the exponent byte of one weight
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="last.pt: checkpoint checksum mismatch"):
        load_checkpoint(path)


def test_a_failed_checkpoint_write_says_what_happened(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"cannot write the checkpoint .*state.pt \(\d+ MiB free"):
        save_checkpoint({"w": torch.ones(3)}, tmp_path / "state.pt")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind
