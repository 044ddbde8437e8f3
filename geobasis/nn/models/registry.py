"""The atomistic models by name, built from validated options, and loaded from checkpoints.

:data:`MODELS` maps the name stored in ``model.config["model"]`` (and taken by
``geobasis train --model``) to the class; a new model is one module plus one line here.
Each class's constructor signature is the one source of its options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from geobasis.nn.models.atomistic import AtomisticModel
from geobasis.nn.models.faenet import FAENet
from geobasis.nn.models.many_body import ManyBodyPotential
from geobasis.nn.models.options import coerce
from geobasis.nn.models.potential import Potential
from geobasis.serialization import load_checkpoint

__all__ = ["MODELS", "build_model", "check_model_options", "load_model", "CHECKPOINT_VERSION"]

MODELS: dict[str, type[AtomisticModel]] = {
    Potential.name: Potential,
    FAENet.name: FAENet,
    ManyBodyPotential.name: ManyBodyPotential,
}

#: layout version of the checkpoints the trainer writes (1: before ``format_version``)
CHECKPOINT_VERSION = 2


def model_class(name: str) -> type[AtomisticModel]:
    """``MODELS[name]`` with a clear error for an unknown name."""
    if name not in MODELS:
        raise ValueError(f"model: unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name]


def check_model_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` type-checked against the signature of model ``name``; an option the model
    does not take is an error naming it."""
    known = model_class(name).options()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"model {name!r} takes no option {', '.join(map(repr, unknown))}; its options: "
            f"{', '.join(sorted(known))}"
        )
    return {
        key: coerce(key, value, known[key].type, known[key].choices)
        for key, value in options.items()
    }


def build_model(name: str, **options: Any) -> AtomisticModel:
    """``MODELS[name](**options)`` after :func:`check_model_options`."""
    return model_class(name)(**check_model_options(name, options))


def load_model(checkpoint: str | Path | dict, ema: bool = True) -> AtomisticModel:
    """The model of a checkpoint (``best.pt`` / ``last.pt``, or its loaded dict), EMA weights
    by default.

    Reads every checkpoint layout written so far (version 1 had no ``format_version``);
    a newer layout than this geobasis knows is refused with the version named.
    """
    path = "checkpoint" if isinstance(checkpoint, dict) else checkpoint
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    version = state.get("format_version", 1)
    if version > CHECKPOINT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format {version} is newer than this geobasis reads "
            f"({CHECKPOINT_VERSION}); upgrade geobasis"
        )
    options = dict(state["model_config"])
    name = options.pop("model", "potential")
    model = model_class(name)(**options)
    scale = state["model"].get("energy_scale")
    if scale is not None and scale.dtype != model.energy_scale.dtype:
        model.to(scale.dtype)  # a float64-trained model stays float64; never cast down
    model.load_state_dict(state["model"])
    if ema and state.get("ema"):
        with torch.no_grad():
            for key, parameter in model.named_parameters():
                parameter.copy_(state["ema"][key])
    return model.eval()
