"""Training configuration: one dataclass, every field a ``geobasis train`` flag and a YAML key."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Everything a run needs; saved as ``runs/<name>/config.yaml``."""

    # data: "xtb:<molecule>" (generated and cached), or a path to an rMD17 .npz or .xyz
    data: str = "xtb:ethanol"
    test_data: str | None = None  # a separate test file (e.g. the rMD17 test split)
    num_frames: int = 1000  # xTB frames to generate
    train_size: int | float = 800
    val_size: int | float = 100
    test_size: int | float = 100
    # model: "potential" (equivariant) or "faenet" (frame-averaged Cartesian network)
    model: str = "potential"
    channels: int = 32
    lmax: int = 2
    num_layers: int = 3
    cutoff: float = 5.0
    num_radial: int = 8
    radial_hidden: int = 32
    product: str = "cg"
    nonlinearity: str = "gate"
    frames: str = "stochastic"  # faenet: "stochastic" (one frame per step) or "full"
    frame_group: str = "O3"  # faenet: "O3" or "SO3"
    # optimisation
    epochs: int = 35
    batch_size: int = 8
    lr: float = 5e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.0
    energy_weight: float = 1.0
    force_weight: float = 10.0
    ema_decay: float = 0.99
    grad_clip: float = 10.0
    max_minutes: float | None = 9.0  # stop (and finish cleanly) after this wall time
    # run
    name: str | None = None
    runs_dir: str = "runs"
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints (0: end of epoch)
    # torch.compile the training step's energies and forces (potential model, molecules);
    # about 2x faster steps after a one-off compilation of ~2 minutes
    compile: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        choices = {
            "model": ("potential", "faenet"),
            "frames": ("stochastic", "full"),
            "frame_group": ("O3", "SO3"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.compile and self.model != "potential":
            raise ValueError("compile works with model='potential' (frames are not traceable)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        import yaml

        with open(path) as file:
            values = yaml.safe_load(file) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a YAML mapping of config keys was expected")
        return cls.from_dict(values)

    def to_yaml(self, path: str | Path) -> None:
        import yaml

        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
