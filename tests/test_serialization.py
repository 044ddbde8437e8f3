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
