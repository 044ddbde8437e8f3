"""Training of potentials: configuration, loop, checkpoints, plots (``geobasis train``)."""

from geobasis.train.checkpoint import load_checkpoint, save_checkpoint
from geobasis.train.config import TrainConfig
from geobasis.train.trainer import (
    build_model,
    evaluate,
    load_model,
    load_structures,
    prepare_structures,
    train,
)

__all__ = [
    "TrainConfig",
    "train",
    "evaluate",
    "build_model",
    "load_model",
    "load_structures",
    "prepare_structures",
    "save_checkpoint",
    "load_checkpoint",
]
