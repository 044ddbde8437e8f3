"""Training configuration: the run's settings plus a model section validated against the model.

Every field of :class:`TrainConfig` is a ``geobasis train`` flag and a YAML key, with its
help text in the field's metadata.  The model's own options live in ``model_options`` and
come from the chosen model's constructor signature (:data:`geobasis.nn.MODELS`): an option
the model does not take is an error naming it, and every value, from YAML or the command
line, is type-checked when the config is read (``lr: 2e-3``, a string to PyYAML, is read
as the float it means).  In YAML the model options may also be written at the top level
(``lmax: 3``); they are moved into the model section and validated the same way.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geobasis.nn.models import MODELS, check_model_options
from geobasis.nn.models.options import coerce

__all__ = ["TrainConfig", "model_option_names"]


def _f(default: Any, help: str, choices: tuple | None = None) -> Any:
    """A field with its help text and allowed values (``default=dict``: an empty dict)."""
    metadata = {"help": help, "choices": choices}
    if default is dict:
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


#: keys of configs written before the model section (version 1) and where they went
_LEGACY_RENAMES = {"frame_group": "group"}


def model_option_names() -> set[str]:
    """Every option some registered model takes (what may appear at the YAML top level)."""
    return {name for cls in MODELS.values() for name in cls.options()}


@dataclass
class TrainConfig:
    """Everything a run needs; saved as ``runs/<name>/config.yaml``."""

    # data
    data: str = _f("xtb:ethanol", "dataset: 'xtb:<molecule>' (generated, cached), "
                   "'qm9[:target[:count]]', an rMD17 .npz or an extended .xyz")  # fmt: skip
    test_data: str | None = _f(None, "a separate test set (e.g. the rMD17 test split), "
                               "evaluated whole unless --test-size is given")  # fmt: skip
    val_data: str | None = _f(None, "a separate validation set (all of it); then every "
                              "structure of --data not in the test split trains")  # fmt: skip
    split_file: str | None = _f(None, "JSON with explicit 'train', 'val' (and 'test') index "
                                "lists into --data (the splits.json a run writes)")  # fmt: skip
    num_frames: int = _f(1000, "frames of generated (xtb:) data")
    train_size: int | float = _f(800, "training structures (count, or fraction if < 1.0)")
    val_size: int | float = _f(100, "validation structures (count or fraction)")
    test_size: int | float | None = _f(None, "test structures (count or fraction; default "
                                       "100, or the whole --test-data file)")  # fmt: skip
    energy_key: str | None = _f(None, "name of the energies in the data file (ASE info key or "
                                ".npz array; default: the format's own)")  # fmt: skip
    forces_key: str | None = _f(None, "name of the forces in the data file (ASE arrays key "
                                "or .npz array)")  # fmt: skip
    stress_key: str | None = _f(None, "name of the stress in the data file (ASE info key)")
    # model
    model: str = _f("potential", "the model (geobasis.nn.MODELS)", tuple(MODELS))
    model_options: dict[str, Any] = _f(dict, "options of the model (see the model flags)")
    # optimisation
    epochs: int = _f(35, "epochs (the cosine learning-rate schedule spans them, or "
                     "--max-minutes when that ends the run first)")  # fmt: skip
    batch_size: int = _f(8, "structures per batch")
    lr: float = _f(5e-3, "initial learning rate (Adam)")
    min_lr: float = _f(1e-5, "final learning rate of the cosine schedule")
    weight_decay: float = _f(0.0, "Adam weight decay")
    energy_weight: float = _f(1.0, "weight of the per-atom energy term of the loss")
    force_weight: float = _f(10.0, "weight of the force term of the loss")
    stage_two: float = _f(0.0, "fraction of the run (of --epochs or --max-minutes, whichever "
                          "ends it) after which the stage-two loss weights apply, as MACE's "
                          "--swa stage; 0: off")  # fmt: skip
    stage_two_energy_weight: float = _f(100.0, "energy weight of the loss in stage two")
    stage_two_force_weight: float = _f(10.0, "force weight of the loss in stage two")
    e0s: str = _f("fit", "reference energies: 'fit' (least squares on the training set), "
                  "'average' (mean energy per atom), or an .xyz of isolated atoms (MACE's "
                  "--E0s)")  # fmt: skip
    dtype: str = _f("float32", "floating dtype of the model and data in training and "
                    "evaluation (energies and references are float64 always)",
                    ("float32", "float64"))  # fmt: skip
    ema_decay: float = _f(0.99, "decay of the exponential moving average of the weights")
    grad_clip: float = _f(10.0, "gradient-norm clipping threshold")
    skip_non_finite: bool = _f(False, "skip a batch whose loss is NaN/inf with a warning "
                               "(default: stop, naming its structures)")  # fmt: skip
    max_minutes: float | None = _f(9.0, "stop cleanly after this wall time (minutes)")
    # run
    name: str | None = _f(None, "run folder name under runs_dir (default: a timestamp)")
    runs_dir: str = _f("runs", "folder holding the run folders")
    seed: int = _f(0, "seed of splits, initialisation and batch order")
    device: str = _f("cpu", "torch device: 'cpu', 'cuda', 'cuda:1', or 'auto' (CUDA if available)")
    threads: int | None = _f(None, "torch CPU threads (default: torch's choice)")
    checkpoint_every: int = _f(0, "steps between mid-epoch checkpoints (0: end of epoch)")
    tensorboard: bool = _f(False, "write TensorBoard event files to runs/<name>/tensorboard "
                           "(needs the tensorboard package)")  # fmt: skip
    compile: bool = _f(False, "torch.compile the energies and forces of the training step "
                       "(about 2x faster steps after a one-off compilation)")  # fmt: skip

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = coerce(f.name, getattr(self, f.name), hints[f.name], f.metadata["choices"])
            setattr(self, f.name, value)
        for name in ("epochs", "batch_size", "num_frames", "lr", "train_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)!r}")
        for name in ("val_size", "test_size", "weight_decay", "checkpoint_every", "min_lr"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative, got {getattr(self, name)!r}")
        if not 0.0 <= self.stage_two < 1.0:
            raise ValueError(f"stage_two: a fraction in [0, 1), got {self.stage_two!r}")
        self.model_options = check_model_options(self.model, dict(self.model_options))
        if self.compile and not MODELS[self.model].supports_compile:
            raise ValueError(f"compile: model {self.model!r} cannot be compiled; drop --compile")

    def model_option(self, name: str) -> Any:
        """The model option ``name`` as the model will get it (given, else its default)."""
        if name in self.model_options:
            return self.model_options[name]
        return MODELS[self.model].options()[name].default

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from YAML-like ``values``; top-level model options move into the model
        section; configs written before the model section (with ``extra``) are upgraded."""
        values = dict(values)
        legacy = values.pop("extra", None) is not None
        known = {f.name for f in dataclasses.fields(cls)}
        options = dict(values.pop("model_options", None) or {})
        flat = {k: values.pop(k) for k in list(values) if k not in known}
        flat = {_LEGACY_RENAMES.get(k, k) if legacy else k: v for k, v in flat.items()}
        unknown = sorted(set(flat) - model_option_names())
        if unknown:
            raise ValueError(
                f"unknown config keys {unknown}; known keys: {sorted(known)} and the model "
                f"options {sorted(model_option_names())}"
            )
        if legacy:  # every old config listed every option: keep the chosen model's
            takes = MODELS[values.get("model", "potential")].options()
            flat = {k: v for k, v in flat.items() if k in takes}
        return cls(**values, model_options={**flat, **options})

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
