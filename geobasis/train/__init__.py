"""Training of potentials (``geobasis train``): configuration, trainer, run, plots.

``config.py`` the typed :class:`TrainConfig` (with the model section), ``trainer.py`` the
:class:`Trainer` (model, optimiser, schedule, EMA, checkpoint state), ``evaluation.py`` the
loss and metrics, ``run.py`` a run end to end (:func:`train`), ``plots.py`` the figures.
"""

from geobasis.nn.models import build_model, load_model
from geobasis.serialization import load_checkpoint, save_checkpoint
from geobasis.train.config import TrainConfig
from geobasis.train.evaluation import energy_force_loss, evaluate
from geobasis.train.run import train
from geobasis.train.trainer import ExponentialMovingAverage, Trainer

__all__ = [
    "TrainConfig",
    "Trainer",
    "ExponentialMovingAverage",
    "train",
    "evaluate",
    "energy_force_loss",
    "build_model",
    "load_model",
    "save_checkpoint",
    "load_checkpoint",
]
