"""A training run end to end: run folder and resume, data, model, epochs, test report.

``train(config)`` is what ``geobasis train`` runs.  It is a sequence of small steps, each a
function here: :func:`open_run` (the run folder, or the checkpoint a resumed run continues
from), :func:`load_training_data` (dataset, splits, radius graphs, through
:mod:`geobasis.data`), :func:`build_for_data` (the model, with reference energies and
neighbour count fitted on the training split), the epoch loop of a
:class:`~geobasis.train.Trainer`, and :func:`write_test_report`.  The run folder holds
``config.yaml``, ``splits.json``, ``metrics.csv``, ``last.pt``, ``best.pt`` (one checkpoint
layout), ``test_metrics.json`` and the plots.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Batch

from geobasis.data import Splits, isolated_atom_energies, load_dataset, prepare, split
from geobasis.nn import MODELS, AtomisticModel, build_model, load_model
from geobasis.serialization import atomic_path, load_checkpoint, save_checkpoint
from geobasis.train.config import TrainConfig
from geobasis.train.trainer import Trainer

try:  # POSIX file locks; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "train",
    "open_run",
    "load_training_data",
    "test_structures",
    "build_for_data",
    "TrainingData",
]

METRIC_FIELDS = [
    "epoch",
    "step",
    "lr",
    "train_loss",
    "val_loss",
    "val_energy_mae_meV",
    "val_force_mae_meV_per_A",
    "seconds",
]


def _distributed() -> tuple[int, int, bool]:
    """``(rank, world size, whether this call created the process group)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    created = False
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        created = True
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world, created


def _check_device(device: str) -> torch.device:
    from geobasis.typing import WITH_CUDA

    if device == "auto":
        return torch.device("cuda" if WITH_CUDA else "cpu")
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device: {device!r} is not a torch device ({error})") from None
    if parsed.type == "cuda" and not WITH_CUDA:
        raise ValueError(
            f"device: {device!r} but this torch sees no CUDA device; use --device cpu or "
            "install a CUDA build of torch"
        )
    return parsed


def open_run(config: TrainConfig, resume: bool) -> tuple[TrainConfig, Path, dict | None]:
    """``(config, run folder, checkpoint to resume from or None)``.

    A resumed run continues with the config it was started with (only ``max_minutes`` is
    taken from ``config``); a new run refuses a folder that already holds one.
    """
    name = config.name or time.strftime("run-%Y%m%d-%H%M%S")
    run_dir = Path(config.runs_dir) / name
    last = run_dir / "last.pt"
    if not resume:
        if last.exists():
            raise FileExistsError(f"{run_dir} already holds a run; pass --resume or another --name")
        config.name = name
        return config, run_dir, None
    if not last.exists():
        raise FileNotFoundError(f"--resume: no checkpoint {last}; start the run without it")
    state = load_checkpoint(last)
    for stale in run_dir.glob(".*.tmp"):  # a write cut short by a kill: never renamed
        stale.unlink(missing_ok=True)
    config = TrainConfig.from_dict({**state["config"], "max_minutes": config.max_minutes})
    config.name = name
    return config, run_dir, state


def _keys(config: TrainConfig) -> tuple[str | None, str | None, str | None]:
    return config.energy_key, config.forces_key, config.stress_key


@dataclass
class TrainingData:
    """Prepared (graphs, model dtype) training, validation and test structures."""

    train: list
    val: list
    test: list
    splits: Splits


PYTHON_DATA = "<python>"  # config.data of a run given its structures from Python


def load_training_data(
    config: TrainConfig, dtype: torch.dtype, progress: bool = True, dataset=None
) -> TrainingData:
    """The dataset of ``config`` (or ``dataset``, structures passed from Python) split and
    prepared with the model's cutoff."""
    if dataset is not None:
        structures = list(dataset)
    elif config.data == PYTHON_DATA:
        raise ValueError("data: this run trained on structures passed from Python; pass them "
                         "again with train(..., dataset=...)")  # fmt: skip
    else:
        keys = _keys(config)
        structures = load_dataset(config.data, config.num_frames, config.seed, progress, *keys)
    test_source = structures
    if config.test_data:
        test_source = load_dataset(
            config.test_data, config.num_frames, config.seed, progress, *_keys(config)
        )
    splits = run_splits(config, len(structures), len(test_source) if config.test_data else None)
    cutoff = config.model_option("cutoff")

    def pick(source: list, index: torch.Tensor) -> list:
        prepared = prepare([source[i] for i in index.tolist()], cutoff, dtype)
        for data, i in zip(prepared, index.tolist(), strict=True):
            data.structure_id = i  # named in errors about the structure
        return prepared

    val = pick(structures, splits.val)
    if config.val_data:
        extra = load_dataset(
            config.val_data, config.num_frames, config.seed, progress, *_keys(config)
        )
        val = pick(extra, torch.arange(len(extra)))
    return TrainingData(pick(structures, splits.train), val, pick(test_source, splits.test), splits)


def run_splits(config: TrainConfig, num: int, num_test: int | None = None) -> Splits:
    """The run's indices into ``config.data`` (and into the test file, of ``num_test``
    structures, when there is one): from ``split_file``, or drawn from the seed.

    The test split is the whole test file unless ``test_size`` is given (100 structures of
    ``data`` without a test file); with ``val_data`` no validation is drawn from ``data``.
    """
    if config.split_file:
        return _read_split_file(config, num, num_test)
    val_size = 0 if config.val_data else config.val_size
    test_size = config.test_size
    if test_size is None:
        test_size = 1.0 if num_test is not None else 100
    return split(num, config.train_size, val_size, test_size, config.seed, num_test=num_test)


def _read_split_file(config: TrainConfig, num: int, num_test: int | None) -> Splits:
    path = Path(config.split_file)
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"split_file: cannot read {path} as JSON ({error})") from None
    if not isinstance(values, dict) or "train" not in values:
        raise ValueError(f"split_file: {path} needs a 'train' list (and 'val', 'test')")
    lists = {
        key: torch.tensor(values.get(key, []), dtype=torch.long) for key in ("train", "val", "test")
    }
    if num_test is not None:  # a test file: its first test_size structures, or all
        count = config.test_size if isinstance(config.test_size, int) else num_test
        lists["test"] = torch.arange(min(count, num_test))
    for key, index in lists.items():
        bound = num_test if key == "test" and num_test is not None else num
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= bound):
            raise ValueError(f"split_file: {key} indices of {path} must lie in 0..{bound - 1}")
    return Splits(lists["train"], lists["val"], lists["test"])


def test_structures(config: TrainConfig, progress: bool = True) -> list:
    """The test split of a run's ``config`` (unprepared): the same structures training
    tested on, drawn again from the same seed."""
    source = config.test_data or config.data
    if source == PYTHON_DATA:
        raise ValueError("data: the run trained on structures passed from Python; give --data")
    structures = load_dataset(source, config.num_frames, config.seed, progress, *_keys(config))
    if config.test_data:  # its first test_size structures, or all of them
        count = config.test_size if isinstance(config.test_size, int) else len(structures)
        return structures[:count]
    return [structures[i] for i in run_splits(config, len(structures)).test.tolist()]


def build_for_data(config: TrainConfig, data: TrainingData) -> tuple[AtomisticModel, float]:
    """The model of ``config``, its neighbour normalisation and reference energies fitted on
    the training split; returns ``(model, loss scale)``."""
    seen = set(torch.cat([d.z for d in data.train]).tolist())
    unseen = set(torch.cat([d.z for d in data.val + data.test]).tolist()) - seen
    if unseen:
        warnings.warn(
            f"elements {sorted(unseen)} occur in the validation/test split but not in the "
            "training split: their reference energies are unknown (zero)",
            stacklevel=2,
        )
    edges = sum(d.edge_index.shape[1] for d in data.train)
    neighbours = max(edges / sum(d.num_nodes for d in data.train), 1.0)
    derived = {"avg_num_neighbors": neighbours, "elements": ",".join(map(str, sorted(seen)))}
    takes = MODELS[config.model].options()
    derived = {k: v for k, v in derived.items() if k in takes}
    model = build_model(config.model, **{**derived, **config.model_options})
    everything = Batch.from_data_list(data.train)
    e0s = config.e0s
    if e0s not in ("fit", "average"):
        e0s = isolated_atom_energies(e0s, config.energy_key)
    model.fit_reference_energies(everything.z, everything.batch, everything.energy, e0s)
    if getattr(everything, "forces", None) is not None:
        scale = float(everything.forces.square().mean().sqrt().clamp(min=1e-6))
    else:  # energies only: the per-atom residual scale of the reference-energy fit
        scale = float(model.energy_scale)
    return model, scale


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    """``metrics.csv`` rewritten whole from the checkpoint's history, atomically: the file
    always agrees with the ``last.pt`` beside it, whenever a run is killed."""
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(history)


def _epoch_row(trainer: Trainer, loss: float, val: dict, seconds: float) -> dict[str, Any]:
    return {
        "epoch": trainer.epoch,
        "step": trainer.global_step,
        "lr": trainer.scheduler.get_last_lr()[0],
        "train_loss": loss,
        "val_loss": val["val_loss"],
        "val_energy_mae_meV": val.get("energy_mae_meV", math.nan),
        "val_force_mae_meV_per_A": val.get("force_mae_meV_per_A", math.nan),
        "seconds": seconds,
    }


LOG = logging.getLogger("geobasis.train")


@contextmanager
def run_log(run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Log ``geobasis.train`` records to ``run_dir/train.log`` (appended across resumes) and
    to the console for the duration of a run; the epoch lines go to both."""
    if not enabled:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    handlers = [logging.FileHandler(run_dir / "train.log"), logging.StreamHandler(sys.stdout)]
    handlers[0].setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    for handler in handlers:
        LOG.addHandler(handler)
    level, LOG.propagate = LOG.level, False
    LOG.setLevel(logging.INFO)
    try:
        yield
    finally:
        for handler in handlers:
            LOG.removeHandler(handler)
            handler.close()
        LOG.setLevel(level)


def _print_row(row: dict[str, Any]) -> None:
    LOG.info(
        f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  val E "
        f"{row['val_energy_mae_meV']:.1f} meV  F {row['val_force_mae_meV_per_A']:.1f} meV/Å  "
        f"({row['seconds']:.0f} s)"
    )


def run_epochs(trainer: Trainer, data: TrainingData, run_dir: Path, progress: bool) -> None:
    """The epoch loop: train, validate, keep the best, checkpoint, then ``metrics.csv``
    from the checkpoint's history; stops after ``max_minutes`` (finishing cleanly)."""
    config, main_rank = trainer.config, trainer.rank == 0
    session = time.perf_counter()
    resumed_at = trainer.seconds  # wall time carried over from earlier sessions

    def save(name: str) -> None:
        trainer.seconds = resumed_at + time.perf_counter() - session
        if main_rank:
            save_checkpoint(trainer.state_dict(), run_dir / name)

    def after_step() -> bool:
        every = config.checkpoint_every
        if every and trainer.step_in_epoch % every == 0:
            save("last.pt")
        late = bool(config.max_minutes) and time.perf_counter() - session > 60 * config.max_minutes
        return trainer.rank_zero_decides(late)

    if main_rank:
        write_metrics(run_dir / "metrics.csv", trainer.history)
    board = _tensorboard(run_dir) if config.tensorboard and main_rank else None
    while trainer.epoch < config.epochs:
        bars = progress and main_rank and sys.stderr.isatty()  # no \r updates in log files
        loss, stopped = trainer.train_epoch(data.train, after_step, bars)
        val = trainer.validate(data.val)
        seconds = resumed_at + time.perf_counter() - session
        trainer.history.append(_epoch_row(trainer, loss, val, seconds))
        if val["improved"]:
            save("best.pt")
        save("last.pt")
        if main_rank:
            write_metrics(run_dir / "metrics.csv", trainer.history)
            _print_row(trainer.history[-1])
        if board is not None:
            for key, value in trainer.history[-1].items():
                if key not in ("epoch", "step"):
                    board.add_scalar(key, value, trainer.epoch)
            board.flush()
        if stopped:
            break
    if board is not None:
        board.close()


def _tensorboard(run_dir: Path):
    """A TensorBoard ``SummaryWriter`` on ``run_dir/tensorboard``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("tensorboard: the tensorboard package is not installed "
                         "(pip install tensorboard)") from None  # fmt: skip
    return SummaryWriter(str(run_dir / "tensorboard"))


def write_test_report(
    trainer: Trainer, data: TrainingData, run_dir: Path, checksums: list[float], seconds: float
) -> dict[str, Any]:
    """Test metrics of ``best.pt``: ``test_metrics.json``, learning curve and parity plot."""
    best = load_model(run_dir / "best.pt").to(trainer.device)
    metrics, predictions = trainer.test_report(data.test, best)
    report = {
        **metrics,
        "epochs": trainer.epoch,
        "wall_seconds": seconds,
        "world_size": trainer.world,
        "parameter_checksums": checksums,
    }
    (run_dir / "test_metrics.json").write_text(json.dumps(report, indent=2))
    split = f"test: {trainer.config.test_data}" if trainer.config.test_data else "test split"
    LOG.info(
        f"{split}: energy MAE {report['energy_mae_meV']:.3f} meV"
        + (
            f", force MAE {report['force_mae_meV_per_A']:.3f} meV/Å"
            if "force_mae_meV_per_A" in report
            else ""
        )  # fmt: skip
        + f" ({report['test_structures']} structures)"
    )
    try:
        from geobasis.train.plots import learning_curve, parity_plot

        learning_curve(run_dir / "metrics.csv", run_dir / "learning_curve.png")
        parity_plot(predictions, run_dir / "parity.png", split)
    except ImportError:  # matplotlib is optional
        pass
    return report


@contextmanager
def run_lock(run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir/.lock`` for the whole run: a second process
    training (or resuming) into the same folder is refused instead of mixing its files in.
    The lock goes with the process (a killed run leaves nothing to clean up)."""
    if not enabled or fcntl is None:  # other ranks of one run; or no POSIX locks
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FileExistsError(
                f"{run_dir} is being written by another process (it holds {run_dir}/.lock); "
                "wait for it to finish or choose another --name"
            ) from None
        yield


def _train(
    config: TrainConfig, resume: bool, progress: bool, rank: int, world: int, dataset
) -> tuple:
    """The run inside its lock: ``(trainer, data, run folder, seconds so far)``."""
    config, run_dir, state = open_run(config, resume)
    device = _check_device(config.device)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    dtype = getattr(torch, config.dtype)
    data = load_training_data(config, dtype, progress, dataset)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.to_yaml(run_dir / "config.yaml")
        (run_dir / "splits.json").write_text(json.dumps(data.splits.to_dict()))
    model, scale = build_for_data(config, data)
    steps_per_epoch = math.ceil(len(data.train) / (config.batch_size * world))
    trainer = Trainer(model.to(device=device, dtype=dtype), config, scale, steps_per_epoch,
                      rank, world)  # fmt: skip
    if state is not None:
        trainer.load_state_dict(state)
    run_epochs(trainer, data, run_dir, progress)
    return trainer, data, run_dir, time.perf_counter() - started


def train(
    config: TrainConfig, resume: bool = False, progress: bool = True, dataset=None
) -> dict[str, Any]:
    """Run (or resume) a training run; returns the test metrics (rank 0, ``{}`` elsewhere).

    ``dataset``: the structures themselves (a list of PyG ``Data`` with ``pos``, ``z``,
    ``energy`` and optionally ``forces``, or a PyG ``Dataset``) instead of ``config.data``;
    the run records ``data: <python>`` and a resumed run needs them passed again.
    """
    if dataset is not None:
        config.data = PYTHON_DATA
    rank, world, created_group = _distributed()
    if config.threads:
        torch.set_num_threads(config.threads)
    config.name = config.name or time.strftime("run-%Y%m%d-%H%M%S")
    run_dir = Path(config.runs_dir) / config.name
    with run_lock(run_dir, enabled=rank == 0), run_log(run_dir, enabled=rank == 0):
        trainer, data, run_dir, seconds = _train(config, resume, progress, rank, world, dataset)
        checksums = trainer.parameter_checksums()
        if world > 1:
            torch.distributed.barrier()
            if created_group:  # no collective follows: close it on every rank before exiting
                torch.distributed.destroy_process_group()
        if rank != 0:
            return {}
        return write_test_report(trainer, data, run_dir, checksums, seconds)
