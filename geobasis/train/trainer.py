"""The :class:`Trainer`: model, optimiser, schedule and EMA, one step, one epoch, validation.

It owns everything a checkpoint holds (:meth:`Trainer.state_dict` /
:meth:`Trainer.load_state_dict`; ``last.pt`` and ``best.pt`` share that one layout) and
nothing about files, datasets or the command line (:mod:`geobasis.train.run` does those).
Batches come in an order fixed by ``(seed, epoch)``, so a run resumed from any checkpoint
(end of epoch, or every ``checkpoint_every`` steps) replays exactly what the uninterrupted
run would have done.  With several processes (``torchrun``), every rank takes its share of
each batch order and gradients are averaged with an all-reduce before each step, so all
ranks hold identical parameters.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from geobasis.nn import AtomisticModel
from geobasis.nn.models import CHECKPOINT_VERSION
from geobasis.train.config import TrainConfig
from geobasis.train.evaluation import energy_force_loss, evaluate

__all__ = ["Trainer", "ExponentialMovingAverage", "CosineSchedule"]


class ExponentialMovingAverage:
    """Exponential moving average of the parameters, swapped in for evaluation.

    .. math:: \\bar\\theta \\leftarrow d\\, \\bar\\theta + (1 - d)\\, \\theta, \\qquad
        d = \\min\\big(d_\\max, \\tfrac{1 + t}{10 + t}\\big)
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: p.detach().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, p in model.named_parameters():
            self.shadow[name].mul_(decay).add_(p.detach(), alpha=1 - decay)

    @torch.no_grad()
    def swap(self, model: torch.nn.Module) -> None:
        """Exchange the model's parameters and the averages (call twice to undo)."""
        for name, p in model.named_parameters():
            saved = p.detach().clone()
            p.copy_(self.shadow[name])
            self.shadow[name] = saved


class CosineSchedule:
    r"""Cosine learning rate over the run's progress :math:`p \in [0, 1]`:

    .. math:: \eta(p) = \eta_\min + \tfrac12 (\eta_0 - \eta_\min)(1 + \cos \pi p)

    The trainer sets :math:`p` each step to the larger of steps done / all steps and
    (with a time limit) minutes trained / ``max_minutes``, so a run cut by its time budget
    still anneals to ``min_lr`` at its end, without a pilot run to count epochs.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, min_lr: float) -> None:
        self.optimizer, self.lr, self.min_lr = optimizer, lr, min_lr
        self.set(0.0)

    def set(self, progress: float) -> None:
        progress = min(max(progress, 0.0), 1.0)
        value = self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))
        for group in self.optimizer.param_groups:
            group["lr"] = value

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]


class Trainer:
    """Trains ``model`` with Adam, a cosine schedule over the run's progress (steps or time),
    gradient clipping, EMA weights and an optional second stage of loss weights.

    Args:
        model: the model (reference energies already fitted).
        config: the run's :class:`TrainConfig` (optimiser settings, loss weights, seed).
        scale: the loss scale :math:`\\sigma` (RMS training force, or energy scale).
        steps_per_epoch: optimiser steps per epoch (the schedule spans all epochs).
        rank: this process's rank.
        world: the number of processes.
    """

    def __init__(
        self,
        model: AtomisticModel,
        config: TrainConfig,
        scale: float,
        steps_per_epoch: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.model, self.config, self.scale = model, config, scale
        self.rank, self.world = rank, world
        self.device = next(model.parameters()).device
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = CosineSchedule(self.optimizer, config.lr, config.min_lr)
        self.total_steps = config.epochs * steps_per_epoch
        self.ema = ExponentialMovingAverage(model, config.ema_decay)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_val = math.inf
        # kept in the checkpoint so a resumed run reports what an uninterrupted one would:
        self.epoch_loss = [0.0, 0]  # loss sum and steps of the current epoch
        self.seconds = 0.0  # training wall time up to the last checkpoint
        self.history: list[dict[str, Any]] = []  # one row per finished epoch
        self._clock = time.perf_counter() - self.seconds  # elapsed() counts from here
        self.last_progress = 0.0  # of the latest step; rank 0 alone may read it (no collective)
        if config.compile:
            model.compile_forces()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything to resume from, or to load the model from (one layout)."""
        return {
            "format_version": CHECKPOINT_VERSION,
            "model": self.model.state_dict(),
            "model_config": self.model.config,
            "ema": self.ema.shadow,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"progress": self.last_progress},  # recomputed on resume
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best_val": self.best_val,
            "epoch_loss": list(self.epoch_loss),
            "seconds": self.seconds,
            "history": list(self.history),
            "rng": {"torch": torch.get_rng_state()},
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema.shadow = {k: v.to(self.device) for k, v in state["ema"].items()}
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step, self.best_val = state["global_step"], state["best_val"]
        self.epoch_loss = list(state.get("epoch_loss", [0.0, 0]))  # version 1 had none
        self.seconds, self.history = state.get("seconds", 0.0), list(state.get("history", []))
        self._clock = time.perf_counter() - self.seconds
        torch.set_rng_state(state["rng"]["torch"])

    # ------------------------------------------------------------------ progress
    def elapsed(self) -> float:
        """Seconds of training so far (earlier sessions of a resumed run included)."""
        return time.perf_counter() - self._clock

    def progress(self) -> float:
        """The run's progress in [0, 1]: steps done / all steps, or the fraction of
        ``max_minutes`` used when that is larger (the time budget ends the run first).
        With several processes rank 0's clock decides, so all ranks agree."""
        by_steps = self.global_step / max(self.total_steps, 1)
        minutes = self.config.max_minutes
        if not minutes or self.global_step == 0:  # the first step starts at 0 either way
            return min(by_steps, 1.0)
        by_time = torch.tensor([self.elapsed() / (60 * minutes)], dtype=torch.float64)
        if self.world > 1:
            by_time = by_time.to(self.device)
            torch.distributed.broadcast(by_time, src=0)
        return min(max(by_steps, float(by_time)), 1.0)

    def rank_zero_decides(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (a collective with several processes), so that
        clock-based decisions such as stopping at ``max_minutes`` cannot split the ranks."""
        if self.world == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        torch.distributed.broadcast(value, src=0)
        return bool(value.item())

    def loss_weights(self, progress: float | None = None) -> tuple[float, float]:
        """``(energy weight, force weight)``: stage two's once the progress passes
        ``stage_two`` (when it is set), MACE's recipe for accurate energies."""
        config = self.config
        progress = self.progress() if progress is None else progress
        if config.stage_two and progress >= config.stage_two:
            return config.stage_two_energy_weight, config.stage_two_force_weight
        return config.energy_weight, config.force_weight

    # ------------------------------------------------------------------ training
    def train_step(self, batch) -> float | None:
        """One optimiser step on ``batch``; returns the loss (``None``: a skipped batch whose
        loss was not finite)."""
        self.model.train()
        batch = batch.to(self.device)
        has_forces = getattr(batch, "forces", None) is not None
        progress = self.last_progress = self.progress()  # a collective: every rank, every step
        out = self.model(batch, compute_forces=has_forces)
        loss = energy_force_loss(out, batch, self.scale, *self.loss_weights(progress))
        if not bool(torch.isfinite(loss)):
            return self._non_finite(batch)
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        if self.world > 1:
            for p in self.model.parameters():
                torch.distributed.all_reduce(p.grad)
                p.grad /= self.world
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scheduler.set(progress)
        self.optimizer.step()
        self.ema.update(self.model, self.global_step)
        self.global_step += 1
        return float(loss.detach())

    def _non_finite(self, batch) -> None:
        """Stop (or, with ``skip_non_finite``, skip with a warning) at a NaN/inf loss."""
        index = getattr(batch, "structure_id", None)
        names = index.tolist() if isinstance(index, torch.Tensor) else "unknown"
        where = (
            f"non-finite loss at epoch {self.epoch + 1}, step {self.step_in_epoch + 1}: "
            f"structures {names} of {self.config.data}"
        )
        if not self.config.skip_non_finite:
            raise FloatingPointError(f"{where}; fix or drop them, or pass --skip-non-finite")
        warnings.warn(f"{where} skipped", stacklevel=3)
        self.optimizer.zero_grad(set_to_none=False)
        return None

    def epoch_batches(self, structures: list) -> DataLoader:
        """This rank's batches of the current epoch, in the order fixed by (seed, epoch)."""
        seed = self.config.seed * 1000 + self.epoch
        order = torch.randperm(len(structures), generator=torch.Generator().manual_seed(seed))
        mine = order[self.rank :: self.world].tolist()
        return DataLoader([structures[i] for i in mine], batch_size=self.config.batch_size)

    def train_epoch(
        self,
        structures: list,
        after_step: Callable[[], bool] | None = None,
        progress: bool = False,
    ) -> tuple[float, bool]:
        """Train on the current epoch's remaining batches (a resumed epoch skips the done
        ones).  ``after_step()`` runs after each step and may return ``True`` to stop early.

        Returns ``(mean loss, whether after_step stopped it)``; either way the epoch counts
        as done (a stopped run ends after it).
        """
        loader = self.epoch_batches(structures)
        stopped = False
        desc = f"epoch {self.epoch + 1}/{self.config.epochs}"
        bar = tqdm(total=len(loader), desc=desc, disable=not progress, leave=False)
        bar.update(self.step_in_epoch)
        for step, batch in enumerate(loader):
            if step < self.step_in_epoch:
                continue
            loss = self.train_step(batch)
            if loss is not None:  # None: a skipped non-finite batch
                self.epoch_loss = [self.epoch_loss[0] + loss, self.epoch_loss[1] + 1]
            self.step_in_epoch = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}" if loss is not None else "skipped")
            if after_step is not None and after_step():
                stopped = True
                break
        bar.close()
        self.epoch, self.step_in_epoch = self.epoch + 1, 0  # a stopped run ends here too
        mean = self.epoch_loss[0] / max(self.epoch_loss[1], 1)  # resumed steps included
        self.epoch_loss = [0.0, 0]
        return mean, stopped

    # ------------------------------------------------------------------ evaluation
    def validate(self, structures: list) -> dict[str, Any]:
        """Metrics of the EMA weights on ``structures``; ``val_loss`` (MAE of energy in eV
        plus MAE of forces in eV/Å) and whether it is the best so far (``improved``).

        Without validation structures the latest model counts as the best.
        """
        if not structures:
            return {"val_loss": math.nan, "improved": True}
        self.ema.swap(self.model)
        try:
            metrics = evaluate(self.model, structures, device=self.device)
        finally:
            self.ema.swap(self.model)
        metrics.pop("predictions")
        loss = metrics["energy_mae_meV"] / 1e3 + metrics.get("force_mae_meV_per_A", 0.0) / 1e3
        improved = loss < self.best_val
        self.best_val = min(self.best_val, loss)
        return {**metrics, "val_loss": loss, "improved": improved}

    def parameter_checksums(self) -> list[float]:
        """Sum of every parameter, one per rank: equal when the ranks agree."""
        checksum = float(sum(p.detach().double().sum() for p in self.model.parameters()))
        if self.world == 1:
            return [checksum]
        gathered: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(gathered, checksum)
        return gathered

    def test_report(
        self, structures: list, model: AtomisticModel | None = None
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(metrics, predictions)`` of ``model`` (default: the EMA weights) on the test
        ``structures``."""
        swap = model is None
        if swap:
            model = self.model
            self.ema.swap(model)
        try:
            metrics = evaluate(model, structures, device=self.device)
        finally:
            if swap:
                self.ema.swap(model)
        predictions = metrics.pop("predictions")
        return {**metrics, "test_structures": len(structures)}, predictions
