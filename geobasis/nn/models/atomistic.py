r"""Shared machinery of the models that map atoms to energies, forces and stress.

.. math::

    E_g = \sum_{i \in g} \big( s\, \varepsilon_i + E^\text{ref}_{z_i} \big), \qquad
    \mathbf F_i = -\frac{\partial E}{\partial \vec x_i}, \qquad
    \sigma = \frac{1}{V} \frac{\partial E}{\partial \epsilon}

A subclass implements :meth:`AtomisticModel.node_energies` (``[N]`` unit-scale atomic
energies :math:`\varepsilon_i` of an :class:`AtomicGraph`); this base class builds the
radius graph when the data carry none, scales by :math:`s` and shifts by per-element
reference energies :math:`E^\text{ref}_z` (fitted by least squares), sums per graph,
differentiates (forces, and stress through a symmetric strain :math:`\epsilon` of
positions and cell), and holds the compiled energy-and-forces path of training.  The graph
of the derivative is kept in training mode, where force losses are differentiated again.

Each model's constructor signature is the one source of its options
(:func:`geobasis.nn.models.options.signature_options`); ``model.config`` records them with
the registry name under ``"model"``, so :func:`geobasis.nn.models.load_model` rebuilds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch_geometric.nn.inits import reset
from torch_geometric.utils import scatter

from geobasis.graph import radius_graph
from geobasis.nn.models.options import Option, signature_options

__all__ = ["AtomisticModel", "AtomicGraph", "NUM_ELEMENTS", "batch_of"]

NUM_ELEMENTS = 119  # atomic numbers 0..118


def batch_of(data, pos: Tensor) -> Tensor:
    """``data.batch``, or zeros (one graph) when it is absent."""
    batch = getattr(data, "batch", None)
    if batch is None:
        return torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    return batch


def num_graphs_of(data, batch: Tensor) -> int:
    """``data.num_graphs`` when the data say it (a trailing empty graph counts), else
    ``batch.max() + 1``."""
    count = getattr(data, "num_graphs", None)
    if isinstance(count, int):
        return count
    return int(batch.max()) + 1 if batch.numel() else 0


@dataclass
class AtomicGraph:
    """What :meth:`AtomisticModel.node_energies` reads: species, positions (possibly
    strained, so gradients flow to them), graph and cell.

    Attributes:
        z: ``[N]`` atomic numbers (long).
        pos: ``[N, 3]`` positions.
        batch: ``[N]`` graph of each atom.
        edge_index: ``[2, E]`` edges within the cutoff.
        shifts: ``[E, 3]`` periodic image shifts, or ``None``.
        cell: ``[B, 3, 3]`` cells, or ``None``.
    """

    z: Tensor
    pos: Tensor
    batch: Tensor
    edge_index: Tensor
    shifts: Tensor | None = None
    cell: Tensor | None = None


class AtomisticModel(nn.Module):
    """Base class: energies from :meth:`node_energies`, forces and stress by autograd.

    Subclasses set :attr:`name` (their key in :data:`geobasis.nn.MODELS`), call
    :meth:`record_options` with their constructor arguments, set ``self.cutoff`` and
    implement :meth:`node_energies`.
    """

    #: registry name, stored as ``config["model"]``
    name: ClassVar[str] = ""
    #: allowed values of options with a closed set of choices
    option_choices: ClassVar[dict[str, tuple]] = {}
    #: options the trainer derives from the data, not the user
    data_options: ClassVar[tuple[str, ...]] = ("avg_num_neighbors",)
    #: whether :meth:`compile_forces` can trace the model
    supports_compile: ClassVar[bool] = True

    config: dict[str, Any]
    cutoff: float

    def __init__(self) -> None:
        super().__init__()
        # float64 whatever the model's dtype (see _apply): totals of -10^4 eV in float32
        # resolve only ~1 meV, so references are added to the atomic energies in float64
        self.register_buffer("reference_energies", torch.zeros(NUM_ELEMENTS, dtype=torch.float64))
        self.register_buffer("energy_scale", torch.ones(()))
        #: elements seen in training (set by fit_reference_energies; all False before)
        self.register_buffer("trained_elements", torch.zeros(NUM_ELEMENTS, dtype=torch.bool))
        self._compiled: Callable | None = None

    # ------------------------------------------------------------------ options
    @classmethod
    def options(cls) -> dict[str, Option]:
        """The constructor options: type hints, defaults, help text, choices."""
        return signature_options(cls)

    def record_options(self, arguments: dict[str, Any]) -> None:
        """Check the constructor ``arguments`` against :attr:`option_choices` and keep them
        as ``self.config`` (with ``"model": name``)."""
        options = self.options()
        for key, allowed in self.option_choices.items():
            if key in arguments and arguments[key] not in allowed:
                raise ValueError(f"{key}: must be one of {list(allowed)}, got {arguments[key]!r}")
        self.config = {"model": self.name, **{k: arguments[k] for k in options}}

    def reset_parameters(self) -> None:
        """Re-initialise every submodule that can be (PyG's contract); reference energies
        and scale are kept (they are fitted, not learned)."""
        for child in self.children():
            reset(child)

    # ------------------------------------------------------------------ energies
    def node_energies(self, graph: AtomicGraph) -> Tensor:
        """``[N]`` unit-scale atomic energies (before scale and reference shift)."""
        raise NotImplementedError

    def atomic_energies(self, graph: AtomicGraph) -> Tensor:
        """``[N]`` atomic energies (float64): :meth:`node_energies` scaled, plus reference
        energies added in float64, so a float32 model keeps its energies' resolution."""
        energies = self.node_energies(graph) * self.energy_scale
        return energies.to(torch.float64) + self.reference_energies[graph.z]

    def _apply(self, fn, recurse: bool = True):
        """``model.to(...)``, ``.float()``, ...: the reference energies move with the model
        but stay float64 (their values are never rounded to the model's dtype)."""
        reference = self.reference_energies
        super()._apply(fn, recurse)
        self.reference_energies = reference.to(self.energy_scale.device)
        return self

    def atomic_graph(self, data, pos: Tensor, cell: Tensor | None) -> AtomicGraph:
        """The :class:`AtomicGraph` of ``data`` at ``pos``; the radius graph within
        :attr:`cutoff` is built when ``data`` has no ``edge_index``."""
        batch = batch_of(data, pos)
        edge_index = getattr(data, "edge_index", None)
        shifts = getattr(data, "shifts", None)
        if edge_index is None and cell is not None:
            pbc = getattr(data, "pbc", None)
            edge_index, shifts = radius_graph(
                pos.detach(), self.cutoff, batch, cell=cell.detach(), pbc=pbc
            )
        elif edge_index is None:
            edge_index = radius_graph(pos.detach(), self.cutoff, batch)
        return AtomicGraph(data.z.long(), pos, batch, edge_index, shifts, cell)

    def atomic_energies_and_forces(
        self, pos: Tensor, z: Tensor, batch: Tensor, edge_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(atomic energies [N], forces [N, 3])`` of a molecular batch (no cell), the forces
        from ``torch.func.grad``: no ``autograd.grad`` call inside, so ``torch.compile`` can
        trace the whole computation, and a loss on the forces can be backpropagated to the
        parameters through the compiled graph (:meth:`compile_forces`).
        """

        def total(p: Tensor) -> tuple[Tensor, Tensor]:
            atomic = self.atomic_energies(AtomicGraph(z.long(), p, batch, edge_index))
            return atomic.sum(), atomic

        gradient, atomic = torch.func.grad(total, has_aux=True)(pos)
        return atomic, -gradient

    def compile_forces(self) -> AtomisticModel:
        """Compile :meth:`atomic_energies_and_forces` (dynamic shapes, compiled on first
        use); training-mode calls on molecules (no cell, no stress) take it from then on."""
        from geobasis.typing import WITH_CPU_COMPILER

        if not self.supports_compile:
            raise ValueError(f"compile: model {self.name!r} cannot be compiled (not traceable)")
        on_cpu = all(t.device.type == "cpu" for t in self.buffers())
        if on_cpu and not WITH_CPU_COMPILER:
            raise ValueError(
                "compile: torch.compile on CPU needs a C++ compiler and the Python headers "
                "(e.g. apt install g++ python3-dev); or run without compiling"
            )
        self._compiled = torch.compile(self.atomic_energies_and_forces, dynamic=True)
        return self

    # ------------------------------------------------------------------ fitting
    @torch.no_grad()
    def fit_reference_energies(
        self, z: Tensor, batch: Tensor, energy: Tensor, e0s: str | dict[int, float] = "fit"
    ) -> Tensor:
        r"""Per-element reference energies :math:`E^\text{ref}_z` from the training graphs;
        stored and returned ``[119]`` (float64).

        ``e0s``: ``"fit"`` least squares :math:`E_g \approx \sum_{i \in g} E^\text{ref}_{z_i}`;
        ``"average"`` the mean energy per atom for every element; or isolated-atom energies
        ``{z: E0}`` (MACE's ``--E0s``) plus the mean interaction energy per atom as a shift.
        Also sets the energy scale to the RMS residual per atom (at least 1e-3 eV).
        """
        num_graphs = energy.shape[0]
        counts = torch.zeros(num_graphs, NUM_ELEMENTS, dtype=torch.float64)
        counts.index_put_((batch.cpu(), z.cpu()), torch.ones(z.shape[0], dtype=torch.float64),
                          accumulate=True)  # fmt: skip
        present = counts.sum(0) > 0
        reference = _reference_energies(counts, present, energy.double().cpu(), e0s)
        residual = energy.double().cpu() - counts @ reference
        scale = torch.sqrt((residual**2).sum() / counts.sum()).clamp(min=1e-3)
        self.reference_energies.copy_(reference)
        self.energy_scale.fill_(float(scale))
        self.trained_elements.copy_(present)
        return self.reference_energies

    # ------------------------------------------------------------------ forward
    def forward(
        self, data, compute_forces: bool = True, compute_stress: bool | None = None
    ) -> dict[str, Tensor]:
        """Energy ``[B]``, forces ``[N, 3]`` and (with a cell) stress ``[B, 3, 3]``."""
        self.check_data(data)
        pos, cell = data.pos, getattr(data, "cell", None)
        if cell is not None:
            cell = cell.to(pos.dtype).reshape(-1, 3, 3)
        compute_stress = (cell is not None) if compute_stress is None else compute_stress
        if compute_stress and cell is None:
            raise ValueError("stress needs a cell: set data.cell [B, 3, 3]")
        batch = batch_of(data, pos)
        num_graphs = num_graphs_of(data, batch)
        if self._use_compiled(data, compute_forces, compute_stress, cell):
            atomic, forces = self._compiled(pos, data.z, batch, data.edge_index)
            energy = scatter(atomic, batch, dim=0, dim_size=num_graphs, reduce="sum")
            return {"energy": energy, "forces": forces}
        derivatives = compute_forces or compute_stress
        if derivatives and (torch.is_inference_mode_enabled() or not torch.is_grad_enabled()):
            # forces are derivatives: autograd runs inside, the results leave detached
            with torch.inference_mode(False), torch.enable_grad():
                data = data.clone() if hasattr(data, "clone") else data  # inference tensors
                pos, cell = pos.clone(), None if cell is None else cell.clone()
                out = self._autograd_forward(data, pos, cell, batch.clone(), num_graphs,
                                             compute_forces, compute_stress)  # fmt: skip
            return {key: value.detach() for key, value in out.items()}
        return self._autograd_forward(data, pos, cell, batch, num_graphs, compute_forces,
                                      compute_stress)  # fmt: skip

    def check_data(self, data) -> None:
        """Raise a one-line error naming the field unless ``data`` is a valid batch."""
        pos, z = getattr(data, "pos", None), getattr(data, "z", None)
        if pos is None or z is None:
            raise ValueError("data needs `pos` [N, 3] and `z` [N] (atomic numbers)")
        dtype = self.energy_scale.dtype
        if pos.dim() != 2 or pos.shape[1] != 3 or pos.dtype != dtype:
            raise ValueError(
                f"pos must be [N, 3] {dtype} like the model, got {tuple(pos.shape)} {pos.dtype}; "
                "convert the data (data.pos.to(dtype)) or the model (model.to(dtype))"
            )
        if z.shape != pos.shape[:1] or z.is_floating_point():
            raise ValueError(
                f"z must be [N] = [{pos.shape[0]}] integer atomic numbers, got "
                f"{tuple(z.shape)} {z.dtype}"
            )
        if z.numel() and (int(z.min()) < 0 or int(z.max()) >= NUM_ELEMENTS):
            raise ValueError(f"z: atomic numbers must lie in 0..{NUM_ELEMENTS - 1}")
        edge_index = getattr(data, "edge_index", None)
        if edge_index is not None and (edge_index.dtype != torch.long or edge_index.dim() != 2):
            raise ValueError(
                f"edge_index must be [2, E] int64 (torch.long), got {tuple(edge_index.shape)} "
                f"{edge_index.dtype}"
            )
        cell = getattr(data, "cell", None)
        if cell is not None and not bool(torch.isfinite(cell).all()):
            raise ValueError("cell has non-finite values (NaN or inf)")

    def _use_compiled(self, data, compute_forces, compute_stress, cell) -> bool:
        edges = getattr(data, "edge_index", None)
        plain = cell is None and not compute_stress and edges is not None
        return self._compiled is not None and self.training and compute_forces and plain

    def _autograd_forward(
        self, data, pos, cell, batch, num_graphs, compute_forces, compute_stress
    ) -> dict[str, Tensor]:
        leaves = []
        if compute_forces or compute_stress:
            if not pos.requires_grad:
                pos = pos.detach().requires_grad_()
            leaves.append(pos)
        if compute_stress:
            strain = pos.new_zeros(num_graphs, 3, 3, requires_grad=True)
            symmetric = 0.5 * (strain + strain.transpose(1, 2))
            pos = pos + torch.einsum("ni,nij->nj", pos, symmetric[batch])
            cell = cell + torch.bmm(cell, symmetric)
            leaves.append(strain)
        atomic = self.atomic_energies(self.atomic_graph(data, pos, cell))
        energy = scatter(atomic, batch, dim=0, dim_size=num_graphs, reduce="sum")
        out = {"energy": energy}
        if leaves:
            # training on forces differentiates them again: keep the graph
            grads = torch.autograd.grad(
                energy.sum(), leaves, create_graph=self.training, allow_unused=True
            )  # unused: no edges at all (isolated atoms) -> zero forces / stress
            grads = [
                torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads, strict=True)
            ]
            if compute_forces:
                out["forces"] = -grads[0]
            if compute_stress:
                volume = torch.linalg.det(cell).abs()
                out["stress"] = grads[-1] / volume[:, None, None]
        return out

    # ------------------------------------------------------------------ checkpoints
    def upgrade_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Fill in what a state dict written by an earlier layout of the model lacks
        (subclasses rename their own keys and call this)."""
        if "trained_elements" not in state_dict and "reference_energies" in state_dict:
            state_dict["trained_elements"] = state_dict["reference_energies"] != 0
        return state_dict

    def unseen_elements(self, z: Tensor) -> list[int]:
        """Atomic numbers in ``z`` that the model was not trained on (empty when the model
        records no training data)."""
        if not bool(self.trained_elements.any()):
            return []
        present = torch.unique(z.long()).to(self.trained_elements.device)
        return present[~self.trained_elements[present]].tolist()

    def check_elements(self, z: Tensor, allow_unseen: bool = False, flag: str = "") -> None:
        """Raise a clear error for elements the model never saw in training, unless
        ``allow_unseen`` (then their reference energies are zero: predictions are guesses)."""
        unseen = self.unseen_elements(z)
        if unseen and not allow_unseen:
            trained = torch.nonzero(self.trained_elements).flatten().tolist()
            raise ValueError(
                f"elements {unseen} were not in this model's training data (trained on "
                f"{trained}); pass {flag or 'allow_unseen=True'} to predict anyway"
            )

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        """``nn.Module.load_state_dict`` after :meth:`upgrade_state_dict`."""
        return super().load_state_dict(self.upgrade_state_dict(dict(state_dict)), strict, assign)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


def _reference_energies(
    counts: Tensor, present: Tensor, energy: Tensor, e0s: str | dict[int, float]
) -> Tensor:
    """``[119]`` references from ``counts [B, 119]`` atoms per graph (see
    :meth:`AtomisticModel.fit_reference_energies`)."""
    reference = torch.zeros(NUM_ELEMENTS, dtype=torch.float64)
    atoms = counts.sum(1)
    if e0s == "fit":
        solution = torch.linalg.lstsq(counts[:, present], energy[:, None], driver="gelsd")
        reference[present] = solution.solution[:, 0]
    elif e0s == "average":
        reference[present] = (energy / atoms).mean()
    elif isinstance(e0s, dict):
        missing = sorted(set(torch.nonzero(present).flatten().tolist()) - set(e0s))
        if missing:
            raise ValueError(f"e0s: no isolated-atom energy for elements {missing}; add them")
        for element, value in e0s.items():
            reference[int(element)] = float(value)
        shift = ((energy - counts @ reference) / atoms).mean()
        reference[present] += shift
    else:
        raise ValueError(f"e0s: expected 'fit', 'average' or {{z: energy}}, got {e0s!r}")
    return reference
